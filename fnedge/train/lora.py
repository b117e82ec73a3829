"""The LoRA stage: adapt a pretrained base (an HF folder or a GGUF file) to the catalog with peft.

Everything but the model is the from-scratch trainer's (fnedge/train/trainer.py): the generated
conversations, the loss on replies, the schedule, `fit` with its checkpoints, resume, run lock and
Ctrl-C handling. The model is a frozen base (fnedge/train/bases.py) with low-rank adapters on its
projections, plus trainable rows for the chat/call markers the base lacked.

    run/config.yaml        the settings, with `lora:` and `base:`
    run/data/              the conversations, as in a from-scratch run
    run/checkpoint.pt      only the trained weights (adapters, new token rows) + optimizer + step
    run/adapter/           the adapter on its own (peft's save_pretrained) and the tokenizer it needs
    run/model/             base and adapter merged into a plain HF folder: what export reads

New token rows are trained with peft's `trainable_token_indices`: just those rows of the embedding,
and of the output head, which peft keeps tied to them when the base ties its embeddings (SmolLM2
does). `modules_to_save` would train and store a full copy of the embedding instead: 28M values
for SmolLM2 (49k x 576), several times the adapters, and every row would drift, not only the new
ones.

The merge is checked: the adapter model, the merged model and the merged folder as saved must
write the same greedy tokens for a few held-out prompts; fnedge.json records the outcome.

With `lora: {quantize_base: nf4}` the frozen base is held in 4 bits while training (QLoRA,
fnedge/train/qlora.py), and the adapter is merged into the float base.

With `lora: {keep_base: w}` the loss adds w x KL(base || adapted) where the base was already right
(`held_to_base`), so that learning new tools loses fewer of the old answers.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from fnedge.catalog import load_catalog, model_catalog
from fnedge.chat_format import render
from fnedge.data.copied_arguments import copied_arguments
from fnedge.data.generalist import carries_tools
from fnedge.errors import FnedgeError
from fnedge.io import write_json_atomic
from fnedge.train.bases import Base, load_base
from fnedge.train.config import LoraSettings, TrainConfig
from fnedge.train.qlora import float_base_with_adapter, quantize_base
from fnedge.train.dataset import IGNORE_INDEX
from fnedge.train.trainer import (Batch, LossResult, RunState, call_marker_ids, encode_splits, evaluate_loss, fit,
                                  loss_text, make_optimizer, open_run, publish_model, reply_kl, run_locked,
                                  stage_model, token_loss, training_record)

CHECK_PROMPTS = 3
CHECK_TOKENS = 24


def train_lora(config: TrainConfig, run_dir: Path, command: str = "", started: float | None = None) -> Path:
    """Train (or resume) the LoRA run in `run_dir`; returns the merged model folder."""
    if config.lora is None:
        raise FnedgeError("a LoRA run needs LoRA settings (--lora, or a 'lora' mapping in the config)")
    return run_locked(run_dir, lambda folder: _train_locked(config, folder, command, started))


def _train_locked(config: TrainConfig, run_dir: Path, command: str, started: float | None) -> Path:
    started = time.monotonic() if started is None else started  # the time budget counts the data and tokenizer too
    train_records, dev_records = open_run(config, run_dir)

    torch.manual_seed(config.seed)  # LoRA's initial A matrices and dropout draw from it
    base = load_base(config.base)
    four_bit = config.lora.quantize_base  # QLoRA (fnedge/train/qlora.py): the frozen base in 4 bits
    quantized = quantize_base(base.model, four_bit, config.precision) if four_bit else []
    tokenizer = base.tokenizer
    train_examples, dev_examples, dropped = encode_splits(tokenizer, train_records, dev_records, config, run_dir)
    pad_id = tokenizer.pad_token_id
    base_dev_loss = evaluate_loss(base.model, dev_examples, config.batch_tokens, pad_id)
    print(f"base {base.source}{f' ({four_bit}, {len(quantized)} layers)' if four_bit else ''}: "
          f"dev loss {loss_text(base_dev_loss)}"
          + (f", added {', '.join(base.new_tokens)}" if base.new_tokens else ""))

    model = attach_lora(base, config.lora)
    optimizer = make_optimizer(model, config)
    loss = held_to_base(model, tokenizer, config) if config.lora.keep_base else None
    state = fit(model, optimizer, train_examples, dev_examples, tokenizer, config, run_dir, dropped, started, loss)

    save_adapter(model, tokenizer, run_dir)
    prompts = check_prompts(tokenizer, dev_records or train_records)
    extra = {"base": str(base.source), "added_tokens": base.new_tokens, "base_dev_loss": base_dev_loss,
             # a generalist's tools come with each request, so no field of a trained catalog is held to copies
             "generalist": config.generalist or carries_tools(train_records),
             "copied_arguments": ({} if config.generalist or carries_tools(train_records)
                                  else _copied_arguments(train_records, config, base)),
             "trained_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    if four_bit:  # merge into the float base, not into its 4-bit copy
        extra["quantized_base"] = {"type": four_bit, "layers": len(quantized), "merged_into": "float32 base"}
        model, base = float_base_with_adapter(config.base, run_dir / "adapter")
    return save_merged(model, base, prompts, config, state, run_dir, command, extra)


def held_to_base(model, tokenizer, config: TrainConfig):
    """The loss of a run with `lora.keep_base`: the reply loss, plus keep_base x KL(base || adapted) on
    the reply tokens whose next token the base (adapters off) already ranks first.

    Where the base is wrong (a new tool's name, its arguments) only the data teaches. Where it is
    right, the adapted model is held to the base's whole distribution, not only to its top token, so
    decisions the base makes by a small margin (where a copied value ends) move less; replaying the
    old tools' data alone holds only the top token. Costs a forward pass of the base per step."""
    weight, pad_id, call_markers = config.lora.keep_base, tokenizer.pad_token_id, call_marker_ids(tokenizer)

    def loss(forward: torch.nn.Module, batch: Batch) -> LossResult:
        ids, labels = batch
        logits = forward(input_ids=ids).logits
        with torch.no_grad(), model.disable_adapter():
            base_logits = model(input_ids=ids).logits
        reply = token_loss(logits, ids, labels, pad_id, config.context_loss_weight, config.call_loss_weight,
                           call_markers)
        agreed = labels.clone()
        agreed[:, 1:][base_logits[:, :-1].argmax(-1) != ids[:, 1:]] = IGNORE_INDEX
        kl = reply_kl(logits, base_logits, agreed, temperature=1.0)
        return reply + weight * kl, {"reply": reply.item(), "kl": kl.item()}

    return loss


def _copied_arguments(train_records: list[dict[str, Any]], config: TrainConfig, base: Base) -> dict[str, dict[str, bool]]:
    """The copied fields of this run's data; for a base of ours, fields its tools' data showed
    too rarely here keep the base's answer (`copied_arguments`)."""
    inherited = base.record.get("copied_arguments") or {}
    inherited_catalog = model_catalog(base.record, str(base.source / "fnedge.json")) if inherited else None
    return copied_arguments(train_records, load_catalog(config.catalog), inherited, inherited_catalog)


def attach_lora(base: Base, settings: LoraSettings):
    """Wrap the base in peft: adapters on `settings.target_modules`, trainable rows for new markers."""
    from peft import LoraConfig, get_peft_model

    lora_config = LoraConfig(
        r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules), task_type="CAUSAL_LM",
        trainable_token_indices=_token_rows(base.model, sorted(base.new_tokens.values())),
        base_model_name_or_path=str(base.source),
    )
    try:
        return get_peft_model(base.model, lora_config)
    except ValueError as e:  # e.g. no module of the base matches target_modules
        raise FnedgeError(f"{base.source}: cannot attach LoRA ({e})") from None


def _token_rows(model, token_ids: list[int]) -> list[int] | dict[str, list[int]] | None:
    """peft's trainable_token_indices: the embedding alone when the output head shares its weight
    (peft ties the head's rows to it), else both by module name."""
    if not token_ids:
        return None
    inputs, output = model.get_input_embeddings(), model.get_output_embeddings()
    if output is None or output.weight is inputs.weight:
        return token_ids
    names = {id(module): name for name, module in model.named_modules()}
    return {names[id(inputs)]: token_ids, names[id(output)]: token_ids}


def save_adapter(model, tokenizer, run_dir: Path) -> Path:
    """run/adapter: adapter weights and config (with the base's path) and the tokenizer, atomically."""
    final, staging = run_dir / "adapter", run_dir / "adapter.partial"
    shutil.rmtree(staging, ignore_errors=True)
    # The new token rows are part of the adapter (trainable tokens), so the resized embedding is not
    # saved; "auto" would also ask the hub whether a GGUF base's folder names a hub model.
    model.save_pretrained(str(staging), save_embedding_layers=False)
    tokenizer.save_pretrained(str(staging))
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return final


def load_adapter(adapter_dir: str | Path, base: str | Path | None = None):
    """(model, tokenizer): the base (by default the one recorded in the adapter) with the adapter on."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    config_path = adapter_dir / "adapter_config.json"
    if not config_path.is_file():
        raise FnedgeError(f"{adapter_dir}: not an adapter folder (no adapter_config.json)")
    recorded = json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    loaded = load_base(base or recorded)  # adds the same markers at the same ids as in training
    try:
        model = PeftModel.from_pretrained(loaded.model, str(adapter_dir))
    except Exception as e:  # shapes or names that do not fit this base
        raise FnedgeError(f"{adapter_dir}: does not fit the base {loaded.source} ({e.__class__.__name__})") from None
    return model.eval(), loaded.tokenizer


def check_prompts(tokenizer, records: list[dict[str, Any]], count: int = CHECK_PROMPTS) -> list[list[int]]:
    """Token ids of the first user turns of a few conversations, as the runtime would prompt."""
    prompts = []
    for record in records[:count]:
        messages = record["messages"]
        first_reply = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), len(messages))
        text = render(messages[:first_reply], record.get("tool_schemas"), add_generation_prompt=True)
        prompts.append(tokenizer.encode(text, add_special_tokens=False))
    return prompts


@torch.no_grad()
def greedy_tokens(model, prompts: list[list[int]], eos_id: int, max_new_tokens: int = CHECK_TOKENS) -> list[list[int]]:
    model.eval()
    outputs = []
    for prompt in prompts:
        ids, past, new = torch.tensor([prompt]), None, []
        for _ in range(max_new_tokens):
            out = model(input_ids=ids, past_key_values=past, use_cache=True)
            past = out.past_key_values
            new.append(int(out.logits[0, -1].argmax()))
            if new[-1] == eos_id:
                break
            ids = torch.tensor([[new[-1]]])
        outputs.append(new)
    return outputs


def save_merged(model, base: Base, prompts: list[list[int]], config: TrainConfig, state: RunState,
                run_dir: Path, command: str, extra: dict[str, Any]) -> Path:
    """Merge the adapter into the base and write run/model atomically, after checking the merge."""
    from transformers import AutoModelForCausalLM

    eos_id = base.tokenizer.eos_token_id
    adapted = greedy_tokens(model, prompts, eos_id)
    merged = model.merge_and_unload()
    if greedy_tokens(merged, prompts, eos_id) != adapted:
        raise FnedgeError(f"{run_dir}: the merged model writes other greedy tokens than base + adapter; "
                          f"the adapter is kept in {run_dir / 'adapter'}")
    staging = stage_model(merged, base.tokenizer, config, run_dir)
    # Read back as any user would: a plain HF folder, no peft. save_dtype rounding may flip a
    # near-tie, which is recorded rather than refused.
    saved = AutoModelForCausalLM.from_pretrained(str(staging), dtype=torch.float32)
    saved_equal = greedy_tokens(saved, prompts, eos_id) == adapted
    if not saved_equal:
        print(f"warning: the merged model saved as {config.save_dtype} writes other greedy tokens than "
              f"base + adapter on {len(prompts)} check prompts")
    record = training_record(config, state, command)
    record.update(preset=None, **extra, merge_check={
        "prompts": len(prompts), "max_new_tokens": CHECK_TOKENS, "merged_equal": True,
        "saved_equal": saved_equal, "saved_dtype": config.save_dtype})
    write_json_atomic(staging / "fnedge.json", record)
    return publish_model(staging, run_dir)
