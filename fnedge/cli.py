"""The `fnedge` command line: data -> train -> export -> run / eval."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from fnedge.errors import FnedgeError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Tiny function-calling models for the edge: data -> train -> export -> run.")


def _mount_data_commands() -> None:
    from fnedge.data.cli import data_app
    app.add_typer(data_app, name="data", help="Synthesize training conversations from a tool catalog.")


@app.command()
def train(
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, data, tokenizer, final model)."),
    preset: Optional[str] = typer.Option(None, help="Model preset: fc-nano, fc-micro (default), fc-3m, minimind-26m "
                                                    "(ignored with --lora)."),
    config: Optional[Path] = typer.Option(None, help="YAML training config; flags below override it."),
    catalog: Optional[Path] = typer.Option(None, help="Tool catalog JSON (default: the built-in one)."),
    data: Optional[Path] = typer.Option(None, help="Conversations JSONL to train on (default: generate)."),
    n_samples: Optional[int] = typer.Option(None, help="Conversations to generate."),
    epochs: Optional[float] = typer.Option(None, help="Passes over the training data."),
    seed: Optional[int] = typer.Option(None, help="Model init and data-order seed."),
    threads: Optional[int] = typer.Option(None, help="Torch threads (default: all cores)."),
    time_budget: Optional[float] = typer.Option(None, help="Wall minutes the run may take, data and tokenizer "
                                                           "included (default 30; 0: no limit): a slower "
                                                           "machine trains fewer steps, on a schedule "
                                                           "stretched to fit."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the training step: about 1.1x faster "
                                                          "steps here (benchmarks/train_speed.py) after a "
                                                          "warm-up of under a minute; for long runs."),
    lora: bool = typer.Option(False, "--lora", help="Adapt a pretrained base with LoRA instead of training from "
                                                    "scratch (LoRA settings: the config's 'lora' mapping)."),
    qat: bool = typer.Option(False, "--qat", help="Fine-tune a trained model through the Q4_0 export's "
                                                  "quantizer (QAT; defaults: lr 2e-4, 0.25 epochs, 20 warmup "
                                                  "steps; settings: the config's 'qat' mapping)."),
    dpo: bool = typer.Option(False, "--dpo", help="Preference-train a trained model (--base, default: the built-in "
                                                  "one) on its own wrong replies to fresh prompts (DPO; defaults: "
                                                  "lr 2e-4, 2 epochs, 5 warmup steps; settings: the config's 'dpo' "
                                                  "mapping)."),
    distill: bool = typer.Option(False, "--distill", help="Train a student (--preset from scratch, or --base) "
                                                          "from a teacher model (settings: the config's 'distill' "
                                                          "mapping)."),
    teacher: Optional[Path] = typer.Option(None, help="The --distill teacher: an HF model folder (overrides "
                                                      "distill.teacher)."),
    base: Optional[Path] = typer.Option(None, help="Starting model of --lora / --qat / --dpo (or the --distill "
                                                   "student): an HF model folder or a .gguf file (default: the "
                                                   "built-in model; DPO needs a folder)."),
    generalist: bool = typer.Option(False, "--generalist", help="Train a model that reads each request's tools "
                                                                "from its prompt (without --data: generate "
                                                                "conversations with synthesized catalogs)."),
    fresh: bool = typer.Option(False, help="Discard an existing run in --out and start over."),
) -> None:
    """Train a model from scratch on CPU, adapt a pretrained base with --lora, or fine-tune a model
    for its 4-bit export with --qat, preference-train it on its own mistakes with --dpo, or distill a
    teacher into a student with --distill (each resumes automatically if --out holds an interrupted run)."""
    started = time.monotonic()  # before importing torch and transformers (seconds): the time budget counts them
    import shutil

    from fnedge.train.config import TrainConfig
    from fnedge.train.distill import train_distill
    from fnedge.train.dpo import train_dpo
    from fnedge.train.lora import train_lora
    from fnedge.train.qat import train_qat
    from fnedge.train.trainer import train as run_training

    if lora and qat:
        raise FnedgeError("--lora and --qat are two different stages: choose one (to QAT a LoRA run's "
                          "merged model, run --qat --base RUN/model afterwards)")
    settings = TrainConfig.load(config).to_dict() if config else {}
    if lora and settings.get("lora") is None:
        settings["lora"] = {}  # every LoRA default
    if qat and settings.get("qat") is None:
        if config:  # a loaded config spells out every setting, so the QAT defaults cannot apply
            typer.echo("fnedge: --qat uses the config's lr, epochs, warmup_steps and average_decay (a 'qat' mapping in "
                       "the config gets the QAT defaults for those it leaves out)", err=True)
        settings["qat"] = {}  # every QAT default
    if dpo and settings.get("dpo") is None:
        if config:  # as with --qat: a loaded config spells out lr, epochs and warmup_steps
            typer.echo("fnedge: --dpo uses the config's lr, epochs, warmup_steps and average_decay (a 'dpo' mapping in "
                       "the config gets the DPO defaults for those it leaves out)", err=True)
        settings["dpo"] = {}  # every DPO default
    if distill and settings.get("distill") is None:
        settings["distill"] = {}
    if teacher is not None:
        if settings.get("distill") is None:
            raise FnedgeError("--teacher is the teacher of a distillation run: add --distill")
        settings["distill"] = {**settings["distill"], "teacher": str(teacher)}
    adapting = settings.get("lora") is not None
    quantizing = settings.get("qat") is not None
    preferring = settings.get("dpo") is not None
    distilling = settings.get("distill") is not None
    if base is not None:
        if not (adapting or quantizing or preferring or distilling):
            raise FnedgeError("--base is the starting model of a LoRA or QAT run: add --lora or --qat "
                              "(DPO and distillation start from it too: --dpo, --distill)")
        settings["base"] = str(base)
    if preferring and preset is not None:
        typer.echo("fnedge: --preset is ignored with --dpo (the starting model defines the model)", err=True)
        preset = None
    if (adapting or quantizing) and preset is not None:
        typer.echo("fnedge: --preset is ignored with --lora and --qat (the base defines the model)", err=True)
        preset = None
    overrides = {"preset": preset, "catalog": str(catalog) if catalog else None, "data": str(data) if data else None,
                 "n_samples": n_samples, "epochs": epochs, "seed": seed, "threads": threads, "time_budget_minutes": time_budget,
                 "generalist": True if generalist else None, "compile": True if compile else None}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    train_config = TrainConfig.from_dict(settings, source=str(config or "flags"))
    if fresh and out.exists():
        shutil.rmtree(out)
    runner = (train_lora if adapting else train_qat if quantizing else train_dpo if preferring
              else train_distill if distilling else run_training)
    model_dir = runner(train_config, out, command="fnedge " + shlex.join(sys.argv[1:]), started=started)
    typer.echo(f"model written to {model_dir}")


@app.command("export")
def export_command(
    device: str = typer.Option(..., help="Device profile: rpi4, rpi5, android-arm64, laptop-x86."),
    model: Optional[Path] = typer.Option(None, help="HF model folder (default: the built-in model; with "
                                                    "--adapter, the adapter's base if it is a local folder)."),
    quant: Optional[str] = typer.Option(None, help="Comma list of f32,f16,q8_0,q4_0,q4_k_m,q5_k_m,q6_k,"
                                                   "onnx-fp32,onnx-int8,onnx-int4, or an onnx quant + '-ort' "
                                                   "(ORT format, for ONNX Runtime Mobile) (default: the device's)."),
    out: Optional[Path] = typer.Option(None, help="Build folder (default: builds/DEVICE)."),
    eval_cases: Optional[Path] = typer.Option(None, "--eval-cases",
                                              help="Cases JSONL: score every artifact on it and record the "
                                                   "metrics in manifest.json (default: no evaluation)."),
    adapter: Optional[Path] = typer.Option(None, help="peft LoRA adapter folder: merge it into the base model "
                                                      "and export the merged model."),
    allow_over_budget: bool = typer.Option(False, "--allow-over-budget",
                                           help="Export even when the latency estimate breaks the device's budget."),
) -> None:
    """Export a model to a device build: GGUF/ONNX artifacts, tokenizer, catalog and a checksummed manifest."""
    from fnedge.export.build import export_build
    from fnedge.export.dev_metrics import format_headline

    # a progress bar only on a terminal: piped, rich leaves an empty line per artifact
    build = export_build(device, model_dir=model, quants=quant, out_dir=out, eval_cases=eval_cases,
                         show_progress=sys.stderr.isatty(), adapter_dir=adapter,
                         allow_over_budget=allow_over_budget)
    manifest = json.loads((build / "manifest.json").read_text())
    estimate = manifest.get("budget_estimate")
    if estimate:
        low, high = estimate["est_range_ms"]
        typer.echo(f"{manifest['device']}: estimated p95 {estimate['est_latency_p95_ms']:.0f} ms ({low:.0f}-{high:.0f}) "
                   f"for {estimate['artifact']}, budget {estimate['budget_ms']:.0f} ms: {estimate['verdict']} "
                   f"(an estimate; fnedge bench measures)")
    if manifest["model"].get("merged"):
        typer.echo(f"merged adapter {manifest['model']['adapter']['source']} into {manifest['model']['source']}")
    for artifact in manifest["artifacts"]:
        line = f"{build / artifact['file']}  {artifact['quant']}  {artifact['bytes'] / 1e6:.1f} MB"
        if "dev_metrics" in artifact:
            line += "  " + format_headline(artifact["dev_metrics"])
        typer.echo(line)


@app.command()
def run(
    build: Path = typer.Argument(..., help="Build folder made by 'fnedge export'."),
    text: str = typer.Argument(..., help="What the user says."),
    artifact: Optional[str] = typer.Option(None, help="Artifact file in the build (default: primary)."),
    threads: Optional[int] = typer.Option(None, help="Threads (default: the device's, capped at this machine's cores)."),
    as_json: bool = typer.Option(False, "--json", help="Print the reply as JSON."),
    grammar: bool = typer.Option(True, "--grammar/--no-grammar",
                                 help="Decode calls under the catalog's call grammar (default on)."),
    execute: bool = typer.Option(False, "--execute", help="Stream the reply and run the calls with the built-in "
                                 "executors (save_file, calculate, convert_units), feeding results back."),
    workspace: Path = typer.Option(Path("workspace"), help="Folder save_file writes into (with --execute)."),
) -> None:
    """Answer one request, streamed: the text as it is written, each validated call as it closes."""
    from fnedge.runtime.engine import Assistant

    assistant = Assistant.from_build(build, artifact=artifact, threads=threads, constrained=grammar)
    if execute:
        _run_and_execute(assistant, text, workspace)
        return
    messages = [{"role": "user", "content": text}]
    if as_json:
        reply = assistant.respond(messages)
        typer.echo(json.dumps({"text": reply.turn.text, "calls": reply.turn.calls, "problems": reply.problems,
                               "latency_ms": round(reply.latency_ms, 1)}, ensure_ascii=False))
        return
    _stream_reply(assistant, messages)


def _stream_reply(assistant, messages: list[dict]) -> None:
    """Print the reply as it is generated: text as it comes, each call when it closes (a call
    that refers to the text written before it, once that text is complete), then problems."""
    from fnedge.catalog import call_problem
    from fnedge.chat_format import mentions_text_reference, resolve_text_reference
    from fnedge.runtime.stream_parser import CallEnd, CallError, TextDelta

    started = time.perf_counter()
    written, deferred, problems = [], [], []
    for event in assistant.stream(messages):
        if isinstance(event, TextDelta):
            written.append(event.text)
            typer.echo(event.text, nl=False)
        elif isinstance(event, CallError):
            problems.append(f"malformed call: {event.raw[:60]}")
        elif isinstance(event, CallEnd) and mentions_text_reference(event.call["arguments"]):
            deferred.append(event.call)
        elif isinstance(event, CallEnd):
            typer.echo(("\n" if written and not "".join(written).endswith("\n") else "") + _format_call(event.call))
            problems += [p for p in [call_problem(event.call, assistant.catalog)] if p]
    text = "".join(written).strip()
    for call in deferred:
        call = {**call, "arguments": resolve_text_reference(call["arguments"], text)}
        typer.echo(("\n" if written else "") + _format_call(call))
        problems += [p for p in [call_problem(call, assistant.catalog)] if p]
    if written and not deferred and not "".join(written).endswith("\n"):
        typer.echo("")
    for problem in problems:
        typer.echo(f"! invalid call: {problem}", err=True)
    typer.echo(f"({(time.perf_counter() - started) * 1000:.0f} ms)", err=True)


@app.command("serve")
def serve_command(
    build: Path = typer.Argument(..., help="Build folder made by 'fnedge export'."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, help="TCP port (0: any free port)."),  # server.DEFAULT_PORT
    artifact: Optional[str] = typer.Option(None, help="Artifact file in the build (default: primary)."),
    threads: Optional[int] = typer.Option(None, help="Threads (default: the device's, capped at this machine's cores)."),
) -> None:
    """Serve the build over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/models);
    the model's id is the build's name."""
    from fnedge.runtime.server import serve

    serve(build, host=host, port=port, artifact=artifact, threads=threads,
          log=lambda message: typer.echo(message, err=True))


@app.command()
def chat(
    build: Path = typer.Argument(..., help="Build folder made by 'fnedge export'."),
    workspace: Path = typer.Option(Path("workspace"), help="Folder save_file writes into."),
    artifact: Optional[str] = typer.Option(None, help="Artifact file in the build (default: primary)."),
    threads: Optional[int] = typer.Option(None, help="Threads (default: the device's, capped at this machine's cores)."),
    grammar: bool = typer.Option(True, "--grammar/--no-grammar",
                                 help="Decode calls under the catalog's call grammar (default on)."),
) -> None:
    """Talk with a build, one line at a time: replies stream, calls run with the built-in executors
    (save_file, calculate, convert_units) and the conversation is kept. Ctrl-D, Ctrl-C or 'exit' ends it."""
    from fnedge.runtime.builtin_tools import builtin_executors
    from fnedge.runtime.engine import Assistant

    assistant = Assistant.from_build(build, artifact=artifact, threads=threads, constrained=grammar)
    executors = builtin_executors(workspace)
    interactive = sys.stdin.isatty()  # piped input gets no prompts in its output
    if interactive:
        typer.echo("Ctrl-D or 'exit' ends the chat.", err=True)
    history: list[dict] = []
    while True:
        try:
            text = input("> " if interactive else "").strip()
            if text in ("exit", "quit"):
                break
            if not text:
                continue
            messages = _fit_context(assistant, history + [{"role": "user", "content": text}])
            history = _converse(assistant, messages, executors)
        except (EOFError, KeyboardInterrupt):
            if interactive:
                typer.echo("")
            break
        except FnedgeError as e:  # one bad request (say, over the context) does not end the chat
            typer.echo(f"fnedge: error: {e}", err=True)


def _fit_context(assistant, messages: list[dict]) -> list[dict]:
    """Drop the oldest exchanges until the prompt fills at most half the context: the other half
    is for the reply, tool results and the turns after them, and a small model's context is short."""
    limit = assistant.backend.n_ctx // 2
    while True:
        starts = [i for i, m in enumerate(messages) if m["role"] == "user"]
        if len(starts) < 2 or len(assistant.backend.tokenize(assistant.prompt(messages))) <= limit:
            return messages
        messages = messages[:starts[0]] + messages[starts[1]:]


def _run_and_execute(assistant, text: str, workspace: Path) -> None:
    from fnedge.runtime.builtin_tools import builtin_executors

    _converse(assistant, [{"role": "user", "content": text}], builtin_executors(workspace))


def _converse(assistant, messages: list[dict], executors: dict) -> list[dict]:
    """Answer the last user message with run_conversation: text streamed, each call printed as it
    closes, results and timings after. Returns the conversation with the new turns appended."""
    from fnedge.runtime.stream_parser import CallEnd, TextDelta
    from fnedge.runtime.tools import run_conversation

    def show(event) -> None:
        if isinstance(event, TextDelta):
            typer.echo(event.text, nl=False)
        elif isinstance(event, CallEnd):
            typer.echo("\n" + _format_call(event.call))

    messages, turns = run_conversation(assistant, messages, executors, on_event=show)
    typer.echo("")
    for turn in turns:
        for outcome in turn.outcomes:
            when = (f"dispatched at {outcome.dispatched_ms:.0f} ms ({outcome.timing})"
                    if outcome.dispatched_ms is not None else outcome.timing)
            result = json.dumps(outcome.result, ensure_ascii=False) if outcome.error is None else outcome.error
            typer.echo(f"  {outcome.call['name']}: {when}: {result}", err=True)
        typer.echo(f"({turn.total_ms:.0f} ms)", err=True)
    return messages


def _format_call(call: dict) -> str:
    args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in call["arguments"].items())
    return f"→ {call['name']}({args})"


@app.command("eval")
def eval_command(
    cases: Path = typer.Argument(..., help="Evaluation cases JSONL (see shared/eval/FORMAT.md)."),
    build: Optional[Path] = typer.Option(None, help="Build folder to evaluate."),
    model: Optional[Path] = typer.Option(None, help="HF model folder to evaluate with torch instead."),
    artifact: Optional[str] = typer.Option(None, help="Artifact of the build (default: primary)."),
    threads: Optional[int] = typer.Option(None, help="Threads."),
    json_out: Optional[Path] = typer.Option(None, help="Write the metrics as JSON here."),
    grammar: bool = typer.Option(True, "--grammar/--no-grammar",
                                 help="Decode calls under the catalog's call grammar (default on)."),
) -> None:
    """Score a build (or a model folder) on evaluation cases; print and optionally save the metrics."""
    from fnedge.eval.cases import load_cases
    from fnedge.eval.report import format_report
    from fnedge.eval.runner import run_eval
    from fnedge.io import write_json_atomic
    from fnedge.runtime.engine import Assistant

    if (build is None) == (model is None):
        raise FnedgeError("give exactly one of --build or --model")
    loaded = load_cases(cases)  # a malformed file fails before any model is loaded
    assistant = (Assistant.from_build(build, artifact=artifact, threads=threads, constrained=grammar) if build
                 else Assistant.from_model_dir(model, threads=threads, constrained=grammar))
    summary = run_eval(loaded, assistant)
    typer.echo(format_report(summary))
    if json_out:
        write_json_atomic(json_out, summary)


@app.command("bench")
def bench_command(
    build: Path = typer.Argument(..., help="Build folder made by 'fnedge export'."),
    cases: Optional[Path] = typer.Option(None, help="Evaluation cases JSONL (default: shared/eval/dev.jsonl)."),
    device: Optional[str] = typer.Option(None, help="Estimate for this device only: a profile name or a YAML file "
                                                    "(default: every built-in profile)."),
    device_file: Optional[Path] = typer.Option(None, "--device-file", help="Also estimate for this YAML profile."),
    baselines: bool = typer.Option(False, "--baselines", help="Also run the keyword router and SmolLM2-135M."),
    threads: Optional[int] = typer.Option(None, help="Threads for every backend (default: the build's, capped "
                                                     "at this machine's cores)."),
    out: Path = typer.Option(..., "--out", help="Folder for bench.json, report.md and the plots."),
    repeats: int = typer.Option(5, min=1, help="Timed runs of every case per artifact (the median is kept)."),
    baseline_repeats: int = typer.Option(1, min=1, help="Timed runs per case for the baselines."),
) -> None:
    """Benchmark every artifact of a build (accuracy, latency, memory, size), optionally against
    baselines, and estimate latency on the device profiles."""
    from fnedge.bench import BASELINES, run_bench
    from fnedge.devices import get_device, list_devices
    from fnedge.devices.profile_file import load_device_file

    cases = cases or _default_cases()
    profiles = [get_device(device)] if device else list_devices()
    if device_file:
        profiles.append(load_device_file(device_file))
    bench = run_bench(build, cases, out, profiles, baselines=BASELINES if baselines else (), threads=threads,
                      log=lambda message: typer.echo(message, err=True), repeats=repeats,
                      baseline_repeats=baseline_repeats)
    rows = {**bench["artifacts"], **{f"baseline:{k}": v for k, v in bench["baselines"].items()}}
    for name, row in rows.items():
        if row.get("skipped"):
            typer.echo(f"{name:28} skipped: {row['skipped']}")
            continue
        arg = "-" if row["argument_match"] is None else f"{row['argument_match']:.1%}"
        typer.echo(f"{name:28} fn {row['function_match']:.1%}  arg {arg}  p95 {row['latency_p95_ms']:.1f} ms  "
                   f"rss {row['peak_rss_mb']:.0f} MB")
    for name, estimate in bench["devices"].items():
        if estimate.get("est_latency_p95_ms") is not None:
            typer.echo(f"{name:28} est p95 {estimate['est_latency_p95_ms']:.1f} ms "
                       f"(+-{estimate['est_error']:.0%}) budget {estimate['budget_ms']:.0f} ms: "
                       f"{estimate['budget_verdict']}")
    typer.echo(f"report: {out / 'report.md'}")


def _default_cases() -> Path:
    shared = Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev.jsonl"
    if not shared.is_file():
        raise FnedgeError(f"no --cases given and {shared} does not exist")
    return shared


@app.command()
def devices(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also the hardware figures and their sources."),
) -> None:
    """List the device profiles: export defaults, budgets, and (-v) the figures the estimator uses."""
    from fnedge.devices import list_devices

    for d in list_devices():
        typer.echo(f"{d.name:14} {','.join(d.default_quants):6} threads {d.threads}  ctx {d.context_length:<5} "
                   f"budget {d.latency_budget_ms:.0f} ms / {d.peak_memory_mb:.0f} MB  "
                   f"{d.mem_bandwidth_gbs:g} GB/s  {d.gflops:g} GFLOPS  {d.description}")
        if verbose:
            typer.echo(f"{'':14} {d.cores} cores @ {d.clock_ghz:g} GHz, {d.simd}, {d.ram_mb} MB RAM; "
                       f"figures +-{d.figure_uncertainty:.0%}")
            for source in d.sources:
                typer.echo(f"{'':14} - {source}")


def main() -> None:
    try:
        _mount_data_commands()
        app()
    except FnedgeError as e:
        typer.echo(f"fnedge: error: {e}", err=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        typer.echo("fnedge: interrupted", err=True)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
