"""Train a preset from scratch on CPU: AdamW, warmup + cosine (over the steps that fit the time
budget), loss on assistant tokens only, periodic eval loss, atomic checkpoints, and resume after
an interrupt.

A run folder holds everything needed to continue or reproduce it:

    run/config.yaml        the settings (a resumed run must match them)
    run/data/train.jsonl   conversations (generated once, by seed)
    run/data/dev.jsonl     held-out conversations (by phrasing template and value)
    run/tokenizer/         the tokenizer trained on train.jsonl
    run/checkpoint.pt      model + optimizer + step, rewritten atomically
    run/model/             the finished HF folder (config.json, model.safetensors, tokenizer)
"""

from __future__ import annotations

import io
import math
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import LlamaForCausalLM

from fnedge.catalog import load_catalog
from fnedge.chat_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, render
from fnedge.data.copied_arguments import copied_arguments
from fnedge.errors import FnedgeError
from fnedge.io import write_bytes_atomic, write_json_atomic
from fnedge.train.averaging import WeightAverage
from fnedge.train.config import TrainConfig
from fnedge.train.dataset import IGNORE_INDEX, Example, encode_conversations, iterate_epoch, plan_batches
from fnedge.train.presets import make_config
from fnedge.train.time_budget import TimeBudget
from fnedge.train.tokenizer import load_tokenizer, train_tokenizer


@dataclass
class RunState:
    step: int = 0
    tokens_seen: int = 0
    train_seconds: float = 0.0
    last_eval_loss: float | None = None
    last_weights_eval_loss: float | None = None  # with weight averaging: the last step's own weights
    saved_average: bool = True  # with weight averaging: the average's dev loss was no worse, so it is saved
    wall_seconds: float = 0.0  # the command's wall time up to the last checkpoint, over all its invocations
    planned_steps: int = 0     # what `epochs` asks for
    total_steps: int = 0       # what the run takes: planned_steps, or fewer where the time budget says so


def train(config: TrainConfig, run_dir: Path, command: str = "", started: float | None = None) -> Path:
    """Train (or resume) the run in `run_dir`; returns the finished model folder. `started`
    (time.monotonic()) is when the command began, for the time budget; None: now. Every stage's
    entry point takes it too."""
    return run_locked(run_dir, lambda folder: _train_locked(config, folder, command, started))


def run_locked(run_dir: Path, body: Callable[[Path], Path]) -> Path:
    """Create the run folder and run `body` on it under the folder's lock (one trainer per run)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with _RunLock(run_dir):
        return body(run_dir)


def open_run(config: TrainConfig, run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What every stage does first: check (or save) the run's config, set the threads, and load
    (or generate) its train and dev conversations."""
    start_run(config, run_dir)
    return prepare_data(config, run_dir)


def start_run(config: TrainConfig, run_dir: Path) -> None:
    """open_run without the conversations, for a stage that makes its own data (DPO's pairs)."""
    _check_or_save_config(config, run_dir)
    if config.threads:
        torch.set_num_threads(config.threads)


def loss_text(loss: float | None) -> str:
    return "n/a (no dev split)" if loss is None else f"{loss:.4f}"


def _train_locked(config: TrainConfig, run_dir: Path, command: str, started: float | None) -> Path:
    started = time.monotonic() if started is None else started  # the time budget counts the data and tokenizer too
    train_records, dev_records = open_run(config, run_dir)
    tokenizer = prepare_tokenizer(config, run_dir, train_records)
    train_examples, dev_examples, dropped = encode_splits(tokenizer, train_records, dev_records, config, run_dir)

    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(make_config(config.preset, vocab_size=len(tokenizer)))
    optimizer = make_optimizer(model, config)
    state = fit(model, optimizer, train_examples, dev_examples, tokenizer, config, run_dir, dropped, started)
    copied = copied_arguments(train_records, load_catalog(config.catalog))
    return save_model(model, tokenizer, config, state, run_dir, command, {"copied_arguments": copied})


def encode_splits(tokenizer, train_records: list[dict[str, Any]], dev_records: list[dict[str, Any]],
                  config: TrainConfig, run_dir: Path) -> tuple[list[Example], list[Example], int]:
    """Token ids for both splits; also how many training conversations were too long to keep."""
    train_examples, dropped = encode_conversations(tokenizer, train_records, config.max_tokens)
    dev_examples, _ = encode_conversations(tokenizer, dev_records, config.max_tokens)
    if not train_examples:
        raise FnedgeError(f"{run_dir}: no training conversation fits in max_tokens={config.max_tokens}")
    return train_examples, dev_examples, dropped


def make_optimizer(model: torch.nn.Module, config: TrainConfig, fused: bool = True) -> torch.optim.AdamW:
    """AdamW over the trained parameters. Fused (one kernel updates every tensor, where PyTorch's
    default loops over them: fc-micro's compiled steps 1.06x faster here, benchmarks/train_speed.py)
    wherever the parameters' device and dtype have that kernel; `fused=False` is the default loop."""
    groups = _param_groups(model, config.weight_decay)
    fused = fused and _has_fused_kernel([p for group in groups for p in group["params"]])
    # None, not False, for the default: an explicit False would also turn off its multi-tensor loop
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95), eps=1e-8, fused=True if fused else None)


def _has_fused_kernel(params: list[torch.Tensor]) -> bool:
    """PyTorch checks this only at the first step, and then raises; asked here, it picks the loop."""
    from torch.optim.optimizer import _device_dtype_check_for_fused

    try:
        for param in params:
            _device_dtype_check_for_fused(param)
    except RuntimeError:
        return False
    return True


Batch = tuple[torch.Tensor, ...]  # (ids, labels, ...): token ids first, then whatever the loss needs
LossResult = tuple[torch.Tensor, dict[str, float]]  # the loss to minimise, and figures worth logging


@dataclass
class Objective:
    """What `fit_objective` minimises, and over which batches. The default is next-token loss on
    single conversations (`next_token_objective`); a stage with another loss (DPO's pairs of
    replies, distillation's teacher term) brings its own instead of a second training loop."""
    summary: str                                              # what one epoch holds, for the start line
    steps_per_epoch: int
    batches: Callable[[int, int], Iterator[Batch]]            # (epoch, batches to skip) -> that epoch's batches
    loss: Callable[[torch.nn.Module, Batch], LossResult]
    evaluate: Callable[[torch.nn.Module], float | None]       # the dev figure (lower is better), None: no dev split


def next_token_objective(train_examples: list[Example], dev_examples: list[Example], pad_id: int,
                         config: TrainConfig, dropped: int = 0,
                         loss: Callable[[torch.nn.Module, Batch], LossResult] | None = None,
                         call_markers: tuple[int, int] | None = None) -> Objective:
    """Conversations in length-bucketed batches, reshuffled each epoch; by default the reply loss
    (`training_loss`), dev loss on the held-out conversations."""
    def reply_loss(model: torch.nn.Module, batch: Batch) -> LossResult:
        ids, labels = batch
        return training_loss(model, ids, labels, pad_id, config.context_loss_weight,
                             config.call_loss_weight, call_markers), {}

    lengths = [len(e.ids) for e in train_examples]
    return Objective(
        summary=f"{len(train_examples)} conversations ({dropped} over {config.max_tokens} tokens dropped)",
        steps_per_epoch=len(plan_batches(lengths, config.batch_tokens, config.seed)),
        batches=lambda epoch, skip: iterate_epoch(train_examples, config.batch_tokens, config.seed + epoch,
                                                  pad_id, skip),
        loss=loss or reply_loss,
        evaluate=lambda model: evaluate_loss(model, dev_examples, config.batch_tokens, pad_id))


def fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer, train_examples: list[Example],
        dev_examples: list[Example], tokenizer, config: TrainConfig, run_dir: Path, dropped: int = 0,
        started: float | None = None,
        loss: Callable[[torch.nn.Module, Batch], LossResult] | None = None) -> RunState:
    """`fit_objective` over the replies of `train_examples` (`tokenizer` gives the padding and
    call-marker ids), with the next-token loss or a stage's own `loss` on the same batches."""
    objective = next_token_objective(train_examples, dev_examples, tokenizer.pad_token_id, config, dropped,
                                     loss=loss, call_markers=call_marker_ids(tokenizer))
    return fit_objective(model, optimizer, objective, config, run_dir, started)


def fit_objective(model: torch.nn.Module, optimizer: torch.optim.Optimizer, objective: Objective,
                  config: TrainConfig, run_dir: Path, started: float | None = None) -> RunState:
    """The training loop every stage shares: resume from run_dir/checkpoint.pt if there is one, train
    the parameters that require grad, evaluate and checkpoint periodically; on Ctrl-C/SIGTERM
    checkpoint and raise. `started` (time.monotonic()) is when the command began, for the time
    budget; None: now. Returns the finished run's state."""
    average = WeightAverage(model, config.average_decay) if config.average_decay else None
    state = _load_checkpoint(run_dir, model, optimizer, average)
    clock = TimeBudget(config.time_budget_minutes * 60, time.monotonic() if started is None else started,
                       spent_before=state.wall_seconds)
    final_passes = 2 if average is not None else 1

    steps_per_epoch = objective.steps_per_epoch
    state.planned_steps = max(1, math.ceil(config.epochs * steps_per_epoch))
    state.total_steps = min(state.total_steps or state.planned_steps, state.planned_steps)
    total_steps = state.total_steps
    print(f"run {run_dir}: {objective.summary}, {_describe_parameters(model)}, {total_steps} steps"
          + (f" (of {state.planned_steps} planned, by the time budget)" if total_steps < state.planned_steps else "")
          + (f", resuming at step {state.step}" if state.step else "")
          + (f"; time budget {config.time_budget_minutes:g} min" if config.time_budget_minutes else ""))

    use_bf16 = resolve_precision(config.precision) == "bf16"
    # The compiled module shares the model's parameters, so checkpoints, evaluation and the saved
    # model read `model` as before; dynamic shapes, as length-bucketed batches vary in both sizes.
    forward = torch.compile(model, dynamic=True) if config.compile else model
    stop = _StopFlag()
    with stop, _progress() as progress:
        task = progress.add_task("train", total=total_steps, completed=state.step, loss="-", tps="-")
        while state.step < total_steps and not stop.requested:
            epoch, skip = divmod(state.step, steps_per_epoch)
            for batch in objective.batches(epoch, skip):
                step_started = time.perf_counter()
                lr = _learning_rate(state.step, total_steps, config)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss, figures = optimizer_step(forward, optimizer, objective.loss, batch, use_bf16, config.grad_clip)
                if average is not None:
                    average.update()
                tokens = batch[0].numel()
                state.step += 1
                state.tokens_seen += tokens
                elapsed = time.perf_counter() - step_started
                state.train_seconds += elapsed
                clock.record_step(elapsed)
                if config.time_budget_minutes and clock.due(state.step):
                    planned = clock.plan(state.step, state.planned_steps, config.eval_every, final_passes)
                    if planned != total_steps:
                        progress.console.print(
                            f"step {state.step}: time budget {config.time_budget_minutes:g} min, "
                            f"{clock.elapsed() / 60:.1f} spent: the run takes {planned} of {state.planned_steps} "
                            f"planned steps ({clock.mean_step_seconds():.3f} s a step)")
                        total_steps = state.total_steps = planned
                        progress.update(task, total=total_steps)
                progress.update(task, advance=1, loss=f"{loss.item():.3f}", tps=f"{tokens / elapsed:,.0f}")
                shown = "".join(f", {name} {value:.4f}" for name, value in figures.items())
                if not progress.console.is_terminal and state.step % 25 == 0:  # logs get a line, not a bar
                    progress.console.print(f"step {state.step}/{total_steps} loss {loss.item():.4f}{shown} "
                                           f"{state.tokens_seen / state.train_seconds:,.0f} tok/s")
                if state.step % config.eval_every == 0 or state.step == total_steps:
                    pass_started = time.perf_counter()
                    state.last_eval_loss = objective.evaluate(model)
                    clock.record_dev_pass(time.perf_counter() - pass_started)
                    averaged = ""
                    if average is not None and state.step == total_steps:  # only at the end: a dev pass costs
                        state.last_weights_eval_loss = state.last_eval_loss
                        with average.applied():
                            averaged_loss = objective.evaluate(model)
                        # A run shortened by its time budget can end before the average has left its
                        # early, high-rate weights behind: then the last step's weights are saved.
                        state.saved_average = (averaged_loss is None or state.last_weights_eval_loss is None
                                               or averaged_loss <= state.last_weights_eval_loss)
                        if state.saved_average:
                            state.last_eval_loss = averaged_loss
                            averaged = f" (averaged weights; the last step's {loss_text(state.last_weights_eval_loss)})"
                        else:
                            averaged = f" (the last step's weights; their average's {loss_text(averaged_loss)})"
                    progress.console.print(f"step {state.step}: train loss {loss.item():.4f}{shown}, "
                                           f"dev loss {loss_text(state.last_eval_loss)}{averaged}")
                if state.step % config.checkpoint_every == 0 or stop.requested or state.step == total_steps:
                    state.wall_seconds = clock.elapsed()
                    _save_checkpoint(run_dir, model, optimizer, state, average)
                if stop.requested or state.step >= total_steps:
                    break
    if stop.requested:
        raise FnedgeError(f"interrupted at step {state.step}/{total_steps}; checkpoint saved in {run_dir}. "
                          f"Run the same command again to resume.")
    if average is not None and state.saved_average:  # the checkpoint keeps the last step's weights
        average.copy_to_model()
    return state


def optimizer_step(forward: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   loss_fn: Callable[[torch.nn.Module, Batch], LossResult], batch: Batch, use_bf16: bool,
                   grad_clip: float) -> LossResult:
    """One training step on `batch`: the loss (under bf16 autocast when asked), its gradients,
    clipped, and the optimizer's update. `forward` is the model, or its torch.compile wrapper."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
        loss, figures = loss_fn(forward, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], grad_clip)
    optimizer.step()
    return loss, figures


def _describe_parameters(model: torch.nn.Module) -> str:
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if trained == total:
        return f"{total / 1e6:.2f}M params"
    return f"{trained / 1e6:.2f}M of {total / 1e6:.2f}M params trained"


def training_loss(model: LlamaForCausalLM, ids: torch.Tensor, labels: torch.Tensor, pad_id: int,
                  context_weight: float, call_weight: float = 1.0,
                  call_markers: tuple[int, int] | None = None) -> torch.Tensor:
    """Next-token loss on the replies; with `context_weight` > 0 also on every other real token.

    The user's words pass through the model anyway; learning to predict them too costs no extra
    compute and gives a from-scratch model the language of requests that no reply spells out."""
    if context_weight == 0 and call_weight == 1.0:
        return model(input_ids=ids, labels=labels).loss
    return token_loss(model(input_ids=ids).logits, ids, labels, pad_id, context_weight, call_weight, call_markers)


def token_loss(logits: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor, pad_id: int,
               context_weight: float, call_weight: float = 1.0,
               call_markers: tuple[int, int] | None = None) -> torch.Tensor:
    """`training_loss` from logits a stage already has (distillation needs them for its KL term too).

    The tokens that decide the outcome weigh `call_weight`: the first token of each reply (call,
    question or answer) and the tokens inside a call (after `<tool_call>`, up to and including
    `</tool_call>`). A call's few value tokens are what gets scored, while a story's many free
    tokens are not; weighing only the call's tokens tilted replies toward calling."""
    logits = logits[:, :-1].float()
    targets = ids[:, 1:]
    per_token = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                  reduction="none").view_as(targets)
    reply = (labels[:, 1:] != IGNORE_INDEX).float()
    context = (labels[:, 1:] == IGNORE_INDEX) & (targets != pad_id)
    if call_weight != 1.0 and call_markers is not None:
        opening = reply * (1.0 - torch.nn.functional.pad(reply[:, :-1], (1, 0)))
        deciding = (inside_call(ids, call_markers)[:, 1:].float() + opening).clamp(max=1.0)
        reply = reply * (1.0 + (call_weight - 1.0) * deciding)
    weights = reply + context_weight * context.float()
    return (per_token * weights).sum() / weights.sum().clamp(min=1.0)


def reply_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """KL(teacher || student) per reply token (labels != -100), at temperature T, averaged: the
    distillation term, and LoRA's `keep_base` with the base as the teacher."""
    reply = labels[:, 1:] != IGNORE_INDEX
    if not reply.any():
        return student_logits.new_zeros((), dtype=torch.float32)
    student = (student_logits[:, :-1][reply].float() / temperature).log_softmax(-1)
    teacher = (teacher_logits[:, :-1][reply].float() / temperature).log_softmax(-1)
    # batchmean: summed over the vocabulary, averaged over the reply tokens
    return torch.nn.functional.kl_div(student, teacher, log_target=True, reduction="batchmean")


def inside_call(ids: torch.Tensor, call_markers: tuple[int, int]) -> torch.Tensor:
    """True at each token that follows an open `<tool_call>` (the closing marker included)."""
    open_id, close_id = call_markers
    depth = torch.cumsum((ids == open_id).long() - (ids == close_id).long(), dim=1)
    previous = torch.nn.functional.pad(depth[:, :-1], (1, 0))
    return previous > 0


def call_marker_ids(tokenizer) -> tuple[int, int]:
    return tokenizer.convert_tokens_to_ids(TOOL_CALL_OPEN), tokenizer.convert_tokens_to_ids(TOOL_CALL_CLOSE)


def resolve_precision(precision: str) -> str:
    if precision != "auto":
        return precision
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


def prepare_data(config: TrainConfig, run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Generate (or copy) the conversations once; later resumes reuse the same files."""
    from fnedge.data import generate_dataset, read_jsonl, split_by_template, write_jsonl

    data_dir = run_dir / "data"
    train_path, dev_path = data_dir / "train.jsonl", data_dir / "dev.jsonl"
    if not (train_path.is_file() and dev_path.is_file()):
        if config.data:
            records = read_jsonl(Path(config.data))
        elif config.generalist:
            from fnedge.data.generalist import generate_generalist
            records = generate_generalist(n=config.n_samples, seed=config.data_seed)
        else:
            catalog = load_catalog(config.catalog)
            hints = _load_hints(config.hints)
            records = generate_dataset(catalog, n=config.n_samples, seed=config.data_seed, hints=hints,
                                       config=config.data_config())
        train_records, dev_records = split_by_template(records, config.dev_fraction, config.data_seed)
        write_jsonl(dev_records, dev_path)
        write_jsonl(train_records, train_path)
    return read_jsonl(train_path), read_jsonl(dev_path)


def _load_hints(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    from fnedge.data import load_hints
    return load_hints(Path(path))


def prepare_tokenizer(config: TrainConfig, run_dir: Path, records: list[dict[str, Any]]):
    directory = run_dir / "tokenizer"
    if not (directory / "tokenizer.json").is_file():
        texts = (render(r["messages"], r.get("tool_schemas")) for r in records)
        min_frequency = max(2, round(config.merge_min_frequency * len(records)))
        tokenizer = train_tokenizer(texts, vocab_size=config.vocab_size, min_frequency=min_frequency)
        staging = run_dir / "tokenizer.partial"
        shutil.rmtree(staging, ignore_errors=True)
        tokenizer.save_pretrained(str(staging))
        staging.rename(directory)
    return load_tokenizer(directory)


@torch.no_grad()
def evaluate_loss(model: LlamaForCausalLM, examples: list[Example], batch_tokens: int, pad_id: int) -> float | None:
    if not examples:
        return None  # no dev split (e.g. every conversation shares one template)
    model.eval()
    total, count = 0.0, 0
    for ids, labels in iterate_epoch(examples, batch_tokens, seed=0, pad_id=pad_id):
        learned = int((labels[:, 1:] != -100).sum())
        total += model(input_ids=ids, labels=labels).loss.item() * learned
        count += learned
    model.train()
    return total / max(count, 1)


def save_model(model: LlamaForCausalLM, tokenizer, config: TrainConfig, state: RunState,
               run_dir: Path, command: str, extra: dict[str, Any] | None = None) -> Path:
    """Write the finished HF folder atomically (staging folder, then rename); `extra` joins its fnedge.json."""
    staging = stage_model(model, tokenizer, config, run_dir)
    write_json_atomic(staging / "fnedge.json", {**training_record(config, state, command), **(extra or {})})
    return publish_model(staging, run_dir)


def stage_model(model, tokenizer, config: TrainConfig, run_dir: Path) -> Path:
    """Save weights (in config.save_dtype) and tokenizer into run/model.partial; the model in
    memory ends up holding exactly the saved values, in float32."""
    staging = run_dir / "model.partial"
    shutil.rmtree(staging, ignore_errors=True)
    model.to(getattr(torch, config.save_dtype)).save_pretrained(str(staging), safe_serialization=True)
    model.float()
    tokenizer.save_pretrained(str(staging))
    return staging


def training_record(config: TrainConfig, state: RunState, command: str) -> dict[str, Any]:
    """fnedge.json: what the model was trained for and how (exports and the runtime read it)."""
    catalog = load_catalog(config.catalog)
    return {
        "preset": config.preset,
        "catalog_sha256": catalog.sha256(),
        "tools": catalog.names,
        "catalog": catalog.to_openai(),  # the model folder carries its catalog (export, eval --model)
        "generalist": config.generalist,  # a stage whose data carries tool schemas sets it too
        "train_command": command,
        "train_config": config.to_dict(),
        "precision": resolve_precision(config.precision),
        "steps": state.step,
        "planned_steps": state.planned_steps,  # more than "steps" where the time budget shortened the run
        "wall_seconds": round(state.wall_seconds, 1),
        "tokens_seen": state.tokens_seen,
        "train_seconds": round(state.train_seconds, 1),
        "tokens_per_second": round(state.tokens_seen / max(state.train_seconds, 1e-9)),
        "dev_loss": state.last_eval_loss,
        **({"dev_loss_last_step": state.last_weights_eval_loss,
            "weights": "average" if state.saved_average else "last step"}
           if state.last_weights_eval_loss is not None else {}),
    }


def publish_model(staging: Path, run_dir: Path) -> Path:
    final = run_dir / "model"
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return final


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # Decay matrices only; norms (1-D) are left alone, as usual for transformers. Frozen weights
    # (a LoRA base) are not the optimizer's.
    trained = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trained if p.dim() >= 2]
    other = [p for p in trained if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]


def _learning_rate(step: int, total: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


def _check_or_save_config(config: TrainConfig, run_dir: Path) -> None:
    path = run_dir / "config.yaml"
    if path.is_file():
        saved = TrainConfig.load(path)
        if saved != config:
            changed = sorted(k for k, v in config.to_dict().items() if saved.to_dict()[k] != v)
            raise FnedgeError(f"{run_dir}: holds a run with other settings ({', '.join(changed)}); "
                              f"use another --out folder or --fresh")
    else:
        config.save(path)


def _checkpoint_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint keeps of the model: every weight, or only the trained ones when the rest
    is a frozen base that a resume loads again (a LoRA run: megabytes instead of the whole base)."""
    if all(p.requires_grad for p in model.parameters()):
        return model.state_dict()
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(run_dir: Path, model, optimizer, state: RunState,
                     average: WeightAverage | None = None) -> None:
    buffer = io.BytesIO()
    torch.save({"model": _checkpoint_weights(model), "optimizer": optimizer.state_dict(),
                "state": state.__dict__, "rng": torch.get_rng_state(),
                "average": average.state_dict() if average is not None else None}, buffer)
    write_bytes_atomic(run_dir / "checkpoint.pt", buffer.getvalue())


def _load_checkpoint(run_dir: Path, model, optimizer, average: WeightAverage | None = None) -> RunState:
    path = run_dir / "checkpoint.pt"
    if not path.is_file():
        return RunState()
    partial = not all(p.requires_grad for p in model.parameters())
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        if partial and set(saved["model"]) != set(_checkpoint_weights(model)):
            raise KeyError("trained weights differ")
        model.load_state_dict(saved["model"], strict=not partial)
        optimizer.load_state_dict(saved["optimizer"])
        if average is not None:
            if saved.get("average") is None:
                raise KeyError("no averaged weights")
            average.load_state_dict(saved["average"])
    except Exception as e:  # a checkpoint from another preset or a damaged file
        reason = (e.args[0] if isinstance(e, KeyError) and e.args else str(e)).splitlines()[0][:160] if str(e) else ""
        raise FnedgeError(f"{path}: cannot resume from this checkpoint ({e.__class__.__name__}"
                          f"{': ' + reason if reason else ''}); delete it or use --fresh") from None
    torch.set_rng_state(saved["rng"])
    return RunState(**saved["state"])


class _RunLock:
    """One trainer per run folder: two would overwrite each other's checkpoints."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"

    def __enter__(self) -> "_RunLock":
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            owner = self.path.read_text().strip()
            if owner.isdigit() and _process_alive(int(owner)):
                raise FnedgeError(f"{self.path.parent}: another training process (pid {owner}) "
                                  f"is using this run folder") from None
            self.path.unlink(missing_ok=True)  # left behind by a process that died
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return self

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _StopFlag:
    """Turns Ctrl-C / SIGTERM into a request to checkpoint and stop after the current step."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __enter__(self) -> "_StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
                    TimeElapsedColumn(), TimeRemainingColumn())
