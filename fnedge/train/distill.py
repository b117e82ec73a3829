"""The distillation stage: a student learns from a teacher model, on the run's generated conversations.

    fnedge train --distill --teacher fnedge/models/default --preset fc-nano --out runs/nano

The student is a from-scratch `preset` (which takes the teacher's tokenizer) or an existing model
(`base`). How the teacher teaches depends on whether the two share a tokenizer:

* logits (same vocabulary): on each batch the teacher's next-token distributions are the target,
      loss = (1 - alpha) * CE + alpha * T^2 * KL(teacher || student)
  with CE the usual training loss (`token_loss`: replies, plus context_loss_weight x the rest) and
  KL over the reply tokens, both distributions softened by temperature T (Hinton et al., 2015; the
  T^2 keeps the KL gradients' scale independent of T).
* data (different vocabularies, or mode "data"): distributions over different tokens cannot be
  compared, so the teacher writes the replies instead (sequence-level distillation). It answers the
  first turn of every training conversation through the runtime's Assistant; the replies go through
  the teacher hook (fnedge/data/teacher.py: `load_teacher` checks them against the catalog, `mix`
  mixes them in), and the student trains on the result: alpha is then the teacher's share of the data.

`distill.mode` "auto" takes the logits path when it can; "logits" refuses a teacher whose
vocabulary differs. The run prints which path it took, and fnedge.json records it.

    run/data/train.jsonl, dev.jsonl   the generated conversations, as in any run
    run/data/teacher.jsonl            data path: the teacher's conversations (before load_teacher's checks)
    run/checkpoint.pt, run/model/     as in any run; fnedge.json adds "distill"
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from fnedge.catalog import load_catalog
from fnedge.chat_format import TEXT_REFERENCE, dump_arguments, parse_assistant
from fnedge.data.copied_arguments import copied_arguments
from fnedge.errors import FnedgeError
from fnedge.io import write_json_atomic
from fnedge.train.bases import model_record
from fnedge.train.config import DistillSettings, TrainConfig
from fnedge.train.dataset import IGNORE_INDEX, Example, iterate_epoch
from fnedge.train.preference_pairs import learned_turns
from fnedge.train.trainer import (Batch, LossResult, RunState, encode_splits, evaluate_loss, fit_objective,
                                  make_optimizer, next_token_objective, open_run, prepare_tokenizer, publish_model,
                                  reply_kl, run_locked, stage_model, token_loss, training_record)
from fnedge.train.tokenizer import load_tokenizer

# A deferred call's `{{text}}` survives parsing the teacher's reply under this name (parse_assistant
# would substitute the text), so the student learns to refer to its text, not to copy it.
KEPT_REFERENCE = "{{fnedge-kept-text}}"


def train_distill(config: TrainConfig, run_dir: Path, command: str = "", started: float | None = None) -> Path:
    """Distill (or resume distilling) the teacher into the student in `run_dir`; returns the model folder."""
    if config.distill is None:
        raise FnedgeError("a distillation run needs distillation settings (--distill, or a 'distill' mapping)")
    return run_locked(run_dir, lambda folder: _train_locked(config, folder, command, started))


def _train_locked(config: TrainConfig, run_dir: Path, command: str, started: float | None) -> Path:
    started = time.monotonic() if started is None else started  # the time budget counts the data and tokenizer too
    settings = config.distill
    teacher_dir = teacher_model_dir(settings.teacher)
    train_records, dev_records = open_run(config, run_dir)
    teacher_tokenizer = load_tokenizer(teacher_dir)
    model, tokenizer = make_student(config, run_dir, teacher_tokenizer, train_records)
    path = choose_path(settings, teacher_dir, teacher_tokenizer, tokenizer)
    pad_id = tokenizer.pad_token_id
    details: dict[str, Any] = {"teacher": str(teacher_dir), "path": path, "alpha": settings.alpha}

    loss = teacher = None
    if path == "logits":
        teacher = load_teacher_model(teacher_dir)
        loss = logit_distillation_loss(teacher, pad_id, settings, config.context_loss_weight)
        details["temperature"] = settings.temperature
    else:
        train_records, details["teacher_data"] = teacher_data(config, run_dir, teacher_dir, train_records)
    train_examples, dev_examples, dropped = encode_splits(tokenizer, train_records, dev_records, config, run_dir)
    details["dev_loss_before"] = evaluate_loss(model, dev_examples, config.batch_tokens, pad_id)
    if teacher is not None:
        details["dev_kl_before"] = dev_kl(model, teacher, dev_examples, config.batch_tokens, pad_id,
                                          settings.temperature)

    objective = next_token_objective(train_examples, dev_examples, pad_id, config, dropped, loss=loss)
    state = fit_objective(model, make_optimizer(model, config), objective, config, run_dir, started)

    if teacher is not None:
        details["dev_kl_after"] = dev_kl(model, teacher, dev_examples, config.batch_tokens, pad_id,
                                         settings.temperature)
        print(f"dev KL(teacher || student) at T={settings.temperature}: {_number(details['dev_kl_before'])} "
              f"-> {_number(details['dev_kl_after'])}")
    copied = copied_arguments(train_records, load_catalog(config.catalog))
    return save_student(model, tokenizer, config, state, run_dir, command, details, copied)


def save_student(model, tokenizer, config: TrainConfig, state: RunState, run_dir: Path, command: str,
                 details: dict[str, Any], copied: dict[str, dict[str, bool]]) -> Path:
    """run/model, atomically; fnedge.json adds "distill" (and the base's preset for an existing student)
    and the fields its training data copied."""
    staging = stage_model(model, tokenizer, config, run_dir)
    record = {**training_record(config, state, command), "copied_arguments": copied}
    if config.base:
        record.update(preset=model_record(Path(config.base)).get("preset"), base=config.base)
    record["distill"] = details
    write_json_atomic(staging / "fnedge.json", record)
    return publish_model(staging, run_dir)


# --- teacher and student ---------------------------------------------------------------------

def teacher_model_dir(path: str) -> Path:
    folder = Path(path)
    if not folder.exists():
        raise FnedgeError(f"{folder}: teacher model not found (give an HF model folder: distill.teacher or --teacher)")
    for needed in ("config.json", "tokenizer.json"):
        if not (folder / needed).is_file():
            raise FnedgeError(f"{folder}: not a teacher model folder (missing {needed})")
    return folder


def load_teacher_model(folder: Path) -> torch.nn.Module:
    """The teacher in float32, frozen and in eval mode."""
    from transformers import AutoModelForCausalLM

    try:
        teacher = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, local_files_only=True)
    except Exception as e:  # transformers raises many kinds for a bad folder
        raise FnedgeError(f"{folder}: cannot load the teacher ({e.__class__.__name__})") from None
    return teacher.eval().requires_grad_(False)


def make_student(config: TrainConfig, run_dir: Path, teacher_tokenizer, train_records: list[dict[str, Any]]):
    """(model, tokenizer): `base` as it is, or a fresh `preset` that shares the teacher's tokenizer
    (so logits can be compared) unless mode "data" asks for its own, trained on the run's data."""
    from transformers import LlamaForCausalLM

    from fnedge.train.bases import load_base
    from fnedge.train.presets import make_config

    if config.base:
        base = load_base(config.base)
        return base.model, base.tokenizer
    tokenizer = (prepare_tokenizer(config, run_dir, train_records) if config.distill.mode == "data"
                 else teacher_tokenizer)
    torch.manual_seed(config.seed)
    return LlamaForCausalLM(make_config(config.preset, vocab_size=len(tokenizer))), tokenizer


def choose_path(settings: DistillSettings, teacher_dir: Path, teacher_tokenizer, student_tokenizer) -> str:
    """"logits" when the tokenizers agree token for token (and mode allows), else "data"; says which and why."""
    shared = teacher_tokenizer.get_vocab() == student_tokenizer.get_vocab()
    sizes = f"{len(teacher_tokenizer)} and {len(student_tokenizer)} tokens"
    if settings.mode == "logits" and not shared:
        raise FnedgeError(f"{teacher_dir}: distill.mode 'logits' needs a teacher and a student with one tokenizer, "
                          f"but their vocabularies differ ({sizes}); use mode 'auto' or 'data' to train on "
                          f"teacher-written replies")
    if settings.mode == "data" or not shared:
        why = "mode 'data'" if shared else f"their vocabularies differ ({sizes})"
        print(f"distill: teacher-written data ({why}): the teacher {teacher_dir} answers the prompts, "
              f"the student trains on its replies")
        return "data"
    print(f"distill: logits (teacher {teacher_dir} and student share a {len(student_tokenizer)}-token vocabulary): "
          f"loss = {1 - settings.alpha:g} x CE + {settings.alpha:g} x T^2 x KL(teacher || student), "
          f"T={settings.temperature:g}")
    return "logits"


# --- the logits path ---------------------------------------------------------------------------

def logit_distillation_loss(teacher: torch.nn.Module, pad_id: int, settings: DistillSettings,
                            context_weight: float):
    """The loss fit_objective minimises on the logits path (see the module docstring)."""
    alpha, temperature = settings.alpha, settings.temperature

    def loss(model: torch.nn.Module, batch: Batch) -> LossResult:
        ids, labels = batch
        logits = model(input_ids=ids).logits
        with torch.no_grad():
            teacher_logits = teacher(input_ids=ids).logits
        ce = token_loss(logits, ids, labels, pad_id, context_weight)
        kl = reply_kl(logits, teacher_logits, labels, temperature)
        return (1 - alpha) * ce + alpha * temperature ** 2 * kl, {"ce": ce.item(), "kl": kl.item()}

    return loss


@torch.no_grad()
def dev_kl(model: torch.nn.Module, teacher: torch.nn.Module, examples: list[Example], batch_tokens: int,
           pad_id: int, temperature: float) -> float | None:
    """KL(teacher || student) per reply token over the dev conversations."""
    total, count = 0.0, 0
    for ids, labels in iterate_epoch(examples, batch_tokens, seed=0, pad_id=pad_id):
        tokens = int((labels[:, 1:] != IGNORE_INDEX).sum())
        total += reply_kl(model(input_ids=ids).logits, teacher(input_ids=ids).logits, labels,
                          temperature).item() * tokens
        count += tokens
    return total / count if count else None


# --- the data path ---------------------------------------------------------------------------

def teacher_data(config: TrainConfig, run_dir: Path, teacher_dir: Path,
                 records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The training conversations of the data path, and what the teacher hook kept of the teacher's."""
    from fnedge.data.generate import write_jsonl
    from fnedge.data.teacher import load_teacher, mix

    catalog = load_catalog(config.catalog)
    path = run_dir / "data" / "teacher.jsonl"
    if not path.is_file():  # the teacher answers once; a resumed run reads its replies again
        write_jsonl(teacher_conversations(teacher_dir, records, config.distill.max_new_tokens), path)
    kept, report = load_teacher(path, catalog)
    print(f"teacher data: {report.kept} of {report.lines} teacher conversations kept"
          + (f" (dropped: {dict(report.dropped)})" if report.dropped else ""))
    alpha = config.distill.alpha
    mixed = kept if alpha == 1 else mix(records, kept, alpha, seed=config.data_seed)
    return mixed, {"teacher_conversations": report.lines, "kept": report.kept, "dropped": dict(report.dropped),
                   "train_conversations": len(mixed)}


def teacher_conversations(teacher_dir: Path, records: list[dict[str, Any]],
                          max_new_tokens: int) -> list[dict[str, Any]]:
    """The teacher's reply to the first learned turn of each record, as a conversation in the generated format."""
    from fnedge.runtime.engine import Assistant

    assistant = Assistant.from_model_dir(teacher_dir)
    assistant.max_tokens = max_new_tokens
    conversations = []
    for done, record in enumerate(records, 1):
        turns = learned_turns(record)
        if not turns:
            continue
        prompt = record["messages"][:turns[0]]
        reply = reply_message(assistant.respond(prompt).generation.text, f"call_t{done}_")
        if reply is not None:
            conversations.append({"id": f"teacher-{record['id']}", "kind": record.get("kind", "teacher"),
                                  "lang": record.get("lang"), "messages": prompt + [reply]})
        if done % 100 == 0 or done == len(records):
            print(f"teacher answered {done}/{len(records)} prompts")
    return conversations


def reply_message(text: str, call_id_prefix: str) -> dict[str, Any] | None:
    """A reply as a generated-format assistant message (None if a call block does not parse): the
    text, and each call with JSON arguments and its `{{text}}` reference kept."""
    turn = parse_assistant(text.replace(TEXT_REFERENCE, KEPT_REFERENCE))
    if turn.malformed:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": _kept(turn.text)}
    if turn.calls:
        message["tool_calls"] = [
            {"id": f"{call_id_prefix}{i}", "type": "function",
             "function": {"name": call["name"], "arguments": dump_arguments(_kept(call["arguments"]))}}
            for i, call in enumerate(turn.calls)]
    return message


def _kept(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(KEPT_REFERENCE, TEXT_REFERENCE)
    if isinstance(value, dict):
        return {k: _kept(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_kept(v) for v in value]
    return value


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
