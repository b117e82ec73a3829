"""The DPO stage: preference training on the starting model's own mistakes (execution feedback).

    fnedge train --dpo --out runs/dpo                     # the built-in model; --base RUN/model for another

1. Prompts: `dpo.n_prompts` conversations from the data generator, with a seed the starting model
   was not trained on (`dpo.prompt_seed`; by default its recorded data_seed + 1), split by template
   into train and dev as any run's data is.
2. Pairs: the starting model answers one turn of each, greedily, through the runtime's Assistant
   (calls under the call grammar unless `dpo.constrained` is false). Each reply is checked against
   the catalog and the reference turn (fnedge/train/preference_pairs.py); every wrong one becomes a
   pair: chosen = the reference reply, rejected = the model's reply, both after the same prompt.
3. DPO (Rafailov et al., 2023): loss = -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), with
   pi and ref the summed log-probabilities of a reply's tokens under the policy and under the frozen
   starting model. The reference never changes, so its log-probabilities are computed once, before
   training, instead of running a second model every step. `dpo.chosen_nll_weight` > 0 adds that
   many times the chosen reply's per-token NLL (RPO, Pang et al., 2024), which keeps the right
   replies likely while the margin grows (plain DPO lets both replies fall); 0 is plain DPO.

The loss is our own few lines rather than trl's DPOTrainer: trl is not installed, and a small loss
over our encoded pairs runs inside the shared trainer (batching, bf16, checkpoints, resume) on CPU.

Everything else is the trainer's (fnedge/train/trainer.py): the run lock, the config check,
`fit_objective` with checkpoints, resume and Ctrl-C, and the staged, atomic model folder.

    run/config.yaml              the settings, with `dpo:` (and `base:` if not the built-in model)
    run/data/pairs.jsonl         the pairs (schema: preference_pairs.py); made once, a resume reuses them
    run/data/pairs_report.json   prompts, right replies, pairs by failure kind
    run/checkpoint.pt            model + optimizer + step
    run/model/                   the preference-trained HF folder; fnedge.json adds "dpo" (pairs, rewards)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from fnedge.catalog import Catalog, load_catalog
from fnedge.chat_format import IM_END, render_segments
from fnedge.errors import FnedgeError
from fnedge.io import read_json, write_json_atomic
from fnedge.train.bases import model_record
from fnedge.train.config import DpoSettings, TrainConfig
from fnedge.train.dataset import IGNORE_INDEX, Example, collate, plan_batches
from fnedge.train.preference_pairs import build_pairs
from fnedge.train.trainer import (Batch, LossResult, Objective, RunState, fit_objective, make_optimizer,
                                  publish_model, run_locked, stage_model, start_run, training_record)


@dataclass
class PairExample:
    """One pair as token ids: the same prompt, then the chosen or the rejected reply (labels: the reply only)."""
    chosen: Example
    rejected: Example

    @property
    def padded_length(self) -> int:  # the two rows share a batch, padded to the longer one
        return 2 * max(len(self.chosen.ids), len(self.rejected.ids))


def train_dpo(config: TrainConfig, run_dir: Path, command: str = "", started: float | None = None) -> Path:
    """Preference-train (or resume) the DPO run in `run_dir`; returns the model folder."""
    if config.dpo is None:
        raise FnedgeError("a DPO run needs DPO settings (--dpo, or a 'dpo' mapping in the config)")
    return run_locked(run_dir, lambda folder: _train_locked(config, folder, command, started))


def _train_locked(config: TrainConfig, run_dir: Path, command: str, started: float | None) -> Path:
    started = time.monotonic() if started is None else started  # the time budget counts building the pairs too
    from fnedge.train.bases import load_base

    start_run(config, run_dir)
    start = starting_model_dir(config.base)
    pairs, report = prepare_pairs(config, run_dir, start)
    print(f"pairs: {_report_line(report)}")

    base = load_base(start)
    model, tokenizer = base.model, base.tokenizer
    train_pairs, dev_pairs, dropped = encode_pairs(tokenizer, pairs, config.max_tokens)
    if not train_pairs:
        raise FnedgeError(f"{run_dir}: no training pairs ({report['pairs']} wrong replies of {report['prompts']}, "
                          f"{dropped} over {config.max_tokens} tokens); DPO needs the model's mistakes")
    pad_id = tokenizer.pad_token_id
    train_reference = pair_logps(model, train_pairs, config.batch_tokens, pad_id)
    dev_reference = pair_logps(model, dev_pairs, config.batch_tokens, pad_id)

    objective = dpo_objective(train_pairs, train_reference, dev_pairs, dev_reference, pad_id, config, dropped)
    state = fit_objective(model, make_optimizer(model, config), objective, config, run_dir, started)

    after = {"train": evaluate_pairs(model, train_pairs, train_reference, config.dpo.beta, config.batch_tokens, pad_id),
             "dev": evaluate_pairs(model, dev_pairs, dev_reference, config.dpo.beta, config.batch_tokens, pad_id)}
    print("after DPO: " + "; ".join(f"{split} pairs {_figures_line(figures)}"
                                    for split, figures in after.items() if figures))
    details = {"prompt_seed": prompt_seed(config.dpo, start), "pairs": report, "train_pairs": len(train_pairs),
               "dev_pairs": len(dev_pairs), "pairs_over_max_tokens": dropped, "after": after}
    return save_dpo_model(model, tokenizer, start, config, state, run_dir, command, details)


def save_dpo_model(model, tokenizer, start: Path, config: TrainConfig, state: RunState, run_dir: Path,
                   command: str, details: dict[str, Any]) -> Path:
    """run/model, atomically; fnedge.json keeps what the starting model was (preset, generalist) and adds "dpo"."""
    staging = stage_model(model, tokenizer, config, run_dir)
    record = training_record(config, state, command)
    started_from = model_record(start)
    record.update(preset=started_from.get("preset"), generalist=started_from.get("generalist", False),
                  copied_arguments=started_from.get("copied_arguments") or {}, base=str(start), dpo=details)
    write_json_atomic(staging / "fnedge.json", record)
    return publish_model(staging, run_dir)


# --- the starting model and its prompts ---------------------------------------------------------

def starting_model_dir(base: str | None) -> Path:
    """The HF folder DPO starts from: `base`, or the built-in model. The runtime answers the prompts,
    so a .gguf (which LoRA can adapt) must be made into a folder first."""
    from fnedge.train.bases import default_base

    start = Path(base) if base else default_base()
    if not start.is_dir():
        what = "is a file" if start.exists() else "not found"
        raise FnedgeError(f"{start}: DPO starts from an HF model folder ({what}); give --base a model folder")
    for needed in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (start / needed).is_file():
            raise FnedgeError(f"{start}: not a model folder for DPO (missing {needed})")
    return start


def prompt_seed(settings: DpoSettings, start: Path) -> int:
    """The generator seed for the prompts: never the one the starting model's data came from."""
    trained_on = (model_record(start).get("train_config") or {}).get("data_seed")
    if settings.prompt_seed is None:
        return (trained_on or 0) + 1
    if settings.prompt_seed == trained_on:
        raise FnedgeError(f"dpo.prompt_seed {settings.prompt_seed} is the data seed {start} was trained on; "
                          f"pick another so the prompts are new to it")
    return settings.prompt_seed


def prepare_pairs(config: TrainConfig, run_dir: Path, start: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Generate prompts, let the starting model answer and keep the wrong replies as pairs, once:
    a resumed run reads run/data/pairs.jsonl again instead of decoding everything anew."""
    from fnedge.data import generate_dataset, read_jsonl, split_by_template, write_jsonl

    pairs_path, report_path = run_dir / "data" / "pairs.jsonl", run_dir / "data" / "pairs_report.json"
    if pairs_path.is_file() and report_path.is_file():
        return read_jsonl(pairs_path), read_json(report_path)
    settings = config.dpo
    seed = prompt_seed(settings, start)
    catalog = load_catalog(config.catalog)
    records = generate_dataset(catalog, n=settings.n_prompts, seed=seed, hints=config.hints,
                               config=config.data_config())
    _, dev_records = split_by_template(records, config.dev_fraction, seed)
    respond = model_responder(start, catalog, settings)
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 50 == 0 or done == total:
            print(f"answered {done}/{total} prompts ({time.perf_counter() - started:.0f} s)")

    pairs, report = build_pairs(records, respond, catalog, seed, {r["id"] for r in dev_records}, progress)
    write_jsonl(pairs, pairs_path)
    write_json_atomic(report_path, report.to_dict())
    return pairs, report.to_dict()


def model_responder(start: Path, catalog: Catalog, settings: DpoSettings) -> Callable[[list[dict[str, Any]]], str]:
    """Prompt messages -> the model's reply text, decoded as `fnedge eval --model` decodes it."""
    from fnedge.runtime.engine import Assistant

    assistant = Assistant.from_model_dir(start, constrained=settings.constrained)
    assistant.catalog = catalog
    assistant.max_tokens = settings.max_new_tokens
    return lambda messages: assistant.respond(messages).generation.text


# --- pairs as tokens, and their log-probabilities --------------------------------------------

def encode_pairs(tokenizer, pairs: list[dict[str, Any]],
                 max_tokens: int) -> tuple[list[PairExample], list[PairExample], int]:
    """(train, dev, dropped): token ids of each pair, segment by segment as the dataset encodes
    conversations; pairs with a sequence over max_tokens are dropped."""
    train, dev, dropped = [], [], 0
    for pair in pairs:
        segments = [text for text, _ in render_segments(pair["messages"], pair.get("tool_schemas"),
                                                        add_generation_prompt=True)]
        encoded = tokenizer.backend_tokenizer.encode_batch(
            segments + [pair["chosen"] + IM_END, pair["rejected"] + IM_END], add_special_tokens=False)
        prompt = [token for piece in encoded[:-2] for token in piece.ids]
        chosen, rejected = (_reply_example(prompt, piece.ids) for piece in encoded[-2:])
        if max(len(chosen.ids), len(rejected.ids)) > max_tokens:
            dropped += 1
            continue
        (dev if pair.get("split") == "dev" else train).append(PairExample(chosen, rejected))
    return train, dev, dropped


def _reply_example(prompt: list[int], reply: list[int]) -> Example:
    return Example(prompt + reply, [IGNORE_INDEX] * len(prompt) + reply)


def sequence_logps(model: torch.nn.Module, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each row's summed log-probability of its labelled (reply) tokens."""
    logits = model(input_ids=ids).logits[:, :-1].float()
    targets = labels[:, 1:]
    token_nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                ignore_index=IGNORE_INDEX, reduction="none").view_as(targets)
    return -token_nll.sum(dim=1)


def dpo_loss(policy: torch.Tensor, reference: torch.Tensor, beta: float) -> LossResult:
    """DPO on [pairs, 2] summed log-probs (chosen, rejected): the loss, and the implicit rewards'
    mean margin, accuracy (share of pairs whose chosen reply has the higher reward) and chosen reward."""
    rewards = beta * (policy - reference)
    margin = rewards[:, 0] - rewards[:, 1]
    loss = -F.logsigmoid(margin).mean()
    return loss, {"reward_margin": margin.mean().item(), "reward_accuracy": (margin > 0).float().mean().item(),
                  "chosen_reward": rewards[:, 0].mean().item()}


def pair_batches(pairs: list[PairExample], reference: torch.Tensor, batch_tokens: int, seed: int, pad_id: int,
                 skip: int = 0) -> Iterator[Batch]:
    """(ids, labels, reference log-probs): rows chosen0, rejected0, chosen1, ..., a pair never split."""
    for indices in plan_batches([p.padded_length for p in pairs], batch_tokens, seed)[skip:]:
        rows = [row for i in indices for row in (pairs[i].chosen, pairs[i].rejected)]
        ids, labels = collate(rows, pad_id)
        yield ids, labels, reference[indices]


@torch.no_grad()
def pair_logps(model: torch.nn.Module, pairs: list[PairExample], batch_tokens: int, pad_id: int) -> torch.Tensor:
    """[pairs, 2] summed reply log-probs (chosen, rejected) under `model`, in float32."""
    logps = torch.zeros(len(pairs), 2)
    for indices in plan_batches([p.padded_length for p in pairs], batch_tokens, seed=0):
        ids, labels = collate([row for i in indices for row in (pairs[i].chosen, pairs[i].rejected)], pad_id)
        logps[indices] = sequence_logps(model, ids, labels).view(-1, 2)
    return logps


def evaluate_pairs(model: torch.nn.Module, pairs: list[PairExample], reference: torch.Tensor, beta: float,
                   batch_tokens: int, pad_id: int) -> dict[str, float] | None:
    """The DPO loss and reward figures over a set of pairs; None for no pairs."""
    if not pairs:
        return None
    loss, figures = dpo_loss(pair_logps(model, pairs, batch_tokens, pad_id), reference, beta)
    return {"loss": loss.item(), **figures}


def dpo_objective(train_pairs: list[PairExample], train_reference: torch.Tensor, dev_pairs: list[PairExample],
                  dev_reference: torch.Tensor, pad_id: int, config: TrainConfig, dropped: int = 0) -> Objective:
    """What fit_objective minimises in a DPO run: the DPO loss over pair batches, dev DPO loss."""
    beta, nll_weight = config.dpo.beta, config.dpo.chosen_nll_weight

    def loss(model: torch.nn.Module, batch: Batch) -> LossResult:
        ids, labels, reference = batch
        policy = sequence_logps(model, ids, labels).view(-1, 2)
        loss, figures = dpo_loss(policy, reference, beta)
        if nll_weight:  # RPO: keep the chosen replies likely while the margin grows
            chosen_tokens = (labels[0::2, 1:] != IGNORE_INDEX).sum(dim=1)
            nll = -(policy[:, 0] / chosen_tokens).mean()
            loss, figures = loss + nll_weight * nll, {**figures, "chosen_nll": nll.item()}
        return loss, figures

    def dev_loss(model: torch.nn.Module) -> float | None:
        figures = evaluate_pairs(model, dev_pairs, dev_reference, beta, config.batch_tokens, pad_id)
        return figures["loss"] if figures else None

    lengths = [p.padded_length for p in train_pairs]
    return Objective(
        summary=f"{len(train_pairs)} preference pairs ({dropped} over {config.max_tokens} tokens dropped)",
        steps_per_epoch=len(plan_batches(lengths, config.batch_tokens, config.seed)),
        batches=lambda epoch, skip: pair_batches(train_pairs, train_reference, config.batch_tokens,
                                                 config.seed + epoch, pad_id, skip),
        loss=loss, evaluate=dev_loss)


def _report_line(report: dict[str, Any]) -> str:
    kinds = ", ".join(f"{kind} {count}" for kind, count in report["failures"].items())
    return (f"{report['prompts']} prompts, {report['correct']} replies right, {report['pairs']} pairs"
            + (f" ({kinds})" if kinds else ""))


def _figures_line(figures: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in figures.items())
