"""The QAT stage: fine-tune a trained model while the weights that the Q4_0 export stores in 4 bits
pass, in every forward pass, through exactly the quantizer that export uses.

torchao is not a dependency, and its int4 QAT is asymmetric (a zero point per group), which cannot
express Q4_0's symmetric, signed-absmax grid; the fake quantizer below is Q4_0 itself, in torch.

Q4_0 (gguf-py's `Q4_0.quantize_blocks`, llama.cpp's `quantize_row_q4_0_ref`), per block of 32
consecutive values of a row (along the input dimension):

    d = the value of largest magnitude, with its sign, / -8     (the first one on a tie)
    q = min(15, trunc(x * (1 / d) + 8.5))                       round(x / d) + 8, halves rounding up
    stored: q (4 bits) and d as float16;  dequantized: (q - 8) * float16(d)

q is computed with the float32 d, the dequantized value with the float16 one, as the writer does.
The export reads the saved weights (`save_dtype`, float16 by default), so the forward pass first
rounds the trained float32 weights to that dtype, then quantizes. Gradients pass straight through
both roundings (straight-through estimator), to the float32 weights that AdamW updates.

Which tensors: exactly those `fnedge.export.gguf_writer` writes as Q4_0, decided by the writer's own
rule: the q/k/v/o/gate/up/down projections of every decoder layer, and the token embedding when it
is not tied to the output head. The output head (a tied embedding is the head) gets Q8_0 and stays
in float here, as do norms (F32) and any matrix whose rows do not split into 32-value blocks (the
writer falls back to Q8_0 for those; they are listed in fnedge.json). Q/K rows are permuted on
export, which moves whole rows, so blocks and their values are unchanged.

Everything else is the from-scratch trainer's (fnedge/train/trainer.py): the starting model is loaded
as a LoRA base is (fnedge/train/bases.py: the built-in model by default, or `base:`), and `fit` trains
every weight with its checkpoints, resume, run lock and Ctrl-C handling. Defaults are a fine-tune's
(`QAT_DEFAULTS` in config.py): lr 2e-4 with 20 warmup steps, a quarter epoch.

    run/config.yaml        the settings, with `qat:` (and `base:` unless the built-in model)
    run/data/              the conversations, as in a from-scratch run
    run/checkpoint.pt      every float32 weight + optimizer + step
    run/model/             the trained weights *unquantized* in save_dtype: `fnedge export --quant q4_0`
                           quantizes them to exactly the weights the last forward pass used

With `precision: bf16` (`auto` on CPUs with bf16 units) the matmuls inside autocast round those
weights to bfloat16 (8 significant bits against Q4_0's 4 + float16 scale), far below the 4-bit
step; the dev loss is computed without autocast, so it is the Q4_0 model's exactly.

Nothing here names a device (the quantizer runs where the weight is); for multi-GPU runs and what
the shared loop still lacks for them, see fnedge/train/qlora.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils import parametrize

from fnedge.catalog import load_catalog
from fnedge.data.copied_arguments import copied_arguments
from fnedge.errors import FnedgeError
from fnedge.io import write_json_atomic
from fnedge.train.bases import load_base
from fnedge.train.config import TrainConfig
from fnedge.train.trainer import (encode_splits, evaluate_loss, fit, loss_text, make_optimizer,
                                  open_run, publish_model, run_locked, stage_model, training_record)

Q4_0_BLOCK = 32


def q4_0_dequantized(weight: torch.Tensor) -> torch.Tensor:
    """The float32 values GGUF Q4_0 stores for `weight` (last dimension a multiple of 32), bit for bit."""
    blocks = weight.detach().float().reshape(-1, Q4_0_BLOCK)
    extreme = blocks.gather(-1, blocks.abs().argmax(dim=-1, keepdim=True))  # argmax: the first on a tie
    d = extreme / -8  # signed: the extreme value lands on q = 0, the grid's one-sided end
    inverse = torch.where(d == 0, torch.zeros_like(d), torch.reciprocal(d))
    # two separate float32 roundings (multiply, then add), as numpy and C do it; trunc = floor here,
    # since x * inverse >= -8 always
    q = torch.trunc(blocks * inverse + 8.5).clamp(0, 15)
    scale = d.half().float()  # the stored scale; q above used the float32 one, as the writer does
    return ((q - 8) * scale).reshape(weight.shape)


class _StraightThrough(torch.autograd.Function):
    """Forward: the weight as exported (storage dtype, then Q4_0). Backward: the gradient unchanged."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, storage_dtype: torch.dtype) -> torch.Tensor:
        return q4_0_dequantized(weight.to(storage_dtype)).to(weight.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def fake_quant_q4_0(weight: torch.Tensor, storage_dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """Q4_0 of `weight` as saved in `storage_dtype`, with a straight-through gradient."""
    return _StraightThrough.apply(weight, storage_dtype)


class Q4_0FakeQuant(torch.nn.Module):
    """A parametrization: the module's `weight` reads as its Q4_0 value, while
    `parametrizations.weight.original` holds the float weight that is trained."""

    def __init__(self, storage_dtype: torch.dtype) -> None:
        super().__init__()
        self.storage_dtype = storage_dtype

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quant_q4_0(weight, self.storage_dtype)


def export_plan(model) -> tuple[list[str], dict[str, str]]:
    """(weights the Q4_0 export stores as Q4_0, {other matrix: its type and why}), by HF name."""
    # The writer's own tensor list and type rule, so QAT and export cannot disagree.
    from fnedge.export.gguf_writer import _LAYER_TENSORS, _choose_type

    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    parameters = dict(model.named_parameters())
    candidates = [("model.embed_tokens.weight", tied)]
    candidates += [(f"model.layers.{i}.{suffix}", False)
                   for i in range(model.config.num_hidden_layers) for suffix in _LAYER_TENSORS]
    if not tied:
        candidates.append(("lm_head.weight", True))
    quantized, kept = [], {}
    for name, is_output_head in candidates:
        if name not in parameters:
            raise FnedgeError(f"QAT: the model has no {name}; the GGUF export handles Llama models only")
        weight = parameters[name]
        if weight.dim() < 2:
            continue  # norms: F32 in every export
        qtype, reason = _choose_type(np.empty((0, weight.shape[-1]), dtype=np.float32), "Q4_0", is_output_head)
        if qtype == "Q4_0":
            quantized.append(name)
        else:
            kept[name] = reason or f"{qtype} (the output head keeps more bits)"
    return quantized, kept


def attach_fake_quant(model, names: list[str], storage_dtype: torch.dtype) -> None:
    for name in names:
        module = model.get_submodule(name.rsplit(".", 1)[0])
        parametrize.register_parametrization(module, "weight", Q4_0FakeQuant(storage_dtype))


def detach_fake_quant(model) -> None:
    """Put the trained float weights back as plain parameters (what the saved folder holds)."""
    for module in list(model.modules()):
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)


def train_qat(config: TrainConfig, run_dir: Path, command: str = "", started: float | None = None) -> Path:
    """Train (or resume) the QAT run in `run_dir`; returns the model folder."""
    if config.qat is None:
        raise FnedgeError("a QAT run needs QAT settings (--qat, or a 'qat' mapping in the config)")
    return run_locked(run_dir, lambda folder: _train_locked(config, folder, command, started))


def _train_locked(config: TrainConfig, run_dir: Path, command: str, started: float | None) -> Path:
    started = time.monotonic() if started is None else started  # the time budget counts the data and tokenizer too
    train_records, dev_records = open_run(config, run_dir)
    torch.manual_seed(config.seed)  # rows added for missing markers start random before their init
    base = load_base(config.base)
    model, tokenizer = base.model, base.tokenizer
    train_examples, dev_examples, dropped = encode_splits(tokenizer, train_records, dev_records, config, run_dir)
    pad_id = tokenizer.pad_token_id

    quantized, kept = export_plan(model)
    base_dev_loss = evaluate_loss(model, dev_examples, config.batch_tokens, pad_id)
    attach_fake_quant(model, quantized, getattr(torch, config.save_dtype))
    base_q4_dev_loss = evaluate_loss(model, dev_examples, config.batch_tokens, pad_id)
    print(f"base {base.source}: dev loss {loss_text(base_dev_loss)}, as Q4_0 {loss_text(base_q4_dev_loss)}; "
          f"{len(quantized)} matrices trained through Q4_0"
          + (f", added {', '.join(base.new_tokens)}" if base.new_tokens else ""))

    optimizer = make_optimizer(model, config)
    state = fit(model, optimizer, train_examples, dev_examples, tokenizer, config, run_dir, dropped, started)

    detach_fake_quant(model)
    staging = stage_model(model, tokenizer, config, run_dir)
    record = training_record(config, state, command)
    # the fields the runtime's call grammar holds to copies, from this run's data as every stage does
    copied = copied_arguments(train_records, load_catalog(config.catalog))
    record.update(preset=_base_preset(base.source), base=str(base.source), added_tokens=base.new_tokens,
                  base_dev_loss=base_dev_loss, copied_arguments=copied, qat={
                      "scheme": config.qat.scheme, "base_dev_loss_as_q4_0": base_q4_dev_loss,
                      "dev_loss_as_q4_0": state.last_eval_loss, "quantized": len(quantized),
                      "kept_in_float": kept, "storage_dtype": config.save_dtype})
    write_json_atomic(staging / "fnedge.json", record)
    return publish_model(staging, run_dir)


def _base_preset(source: Path) -> str | None:
    """The starting model's preset (QAT keeps the architecture), when its folder records one."""
    record = source / "fnedge.json"
    if not record.is_file():
        return None
    try:
        return json.loads(record.read_text(encoding="utf-8")).get("preset")
    except (OSError, ValueError):
        return None
