"""QLoRA: the LoRA stage (fnedge/train/lora.py) with its frozen base held in 4 bits by bitsandbytes.

`lora: {quantize_base: nf4}` (or fp4; `pip install 'fnedge[qlora]'`). The base is loaded as for
LoRA (fnedge/train/bases.py: float32, our markers added, a GGUF dequantized), then every Linear
layer but the output head becomes a bitsandbytes Linear4bit, quantized on the device its float
weight is on, with what `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")` gives:
blocks of 64, no double quantization. (transformers refuses that config together with a GGUF file,
and the markers must be added to the float model first, so the swap is done here.) The 4-bit
matmuls compute in bfloat16 when the run's precision is bf16: bitsandbytes' kernels ignore
autocast, and float32 there would cost speed and, through float32 activations, memory. The embedding,
tied to the head in SmolLM2, and the norms stay float32. peft then puts its 4-bit-aware LoRA
layers on the projections; checkpoints, resume and the run lock are LoRA's.

The merged folder is the adapter merged into the *float* base, loaded again, not into the 4-bit
copy (that would round the sum back to 4 bits); run/adapter is the same as any LoRA adapter.

On CPUs with AVX512-BF16, bitsandbytes repacks a 4-bit weight for its fast inference kernel the
first time the layer runs in eval mode without gradients (our dev-loss pass), and that kernel has
no backward: the next training steps give the adapters below it no gradient (torch only warns).
`quantize_base` turns the repacking off.

Multi-GPU. The recipe is the usual DDP one: one process per GPU started by
`torchrun --nproc_per_node=N -m fnedge.cli train --lora ...` or
`accelerate launch --multi_gpu --num_processes N -m fnedge.cli train --lora ...`; each process
puts its own copy of the (4-bit) base on cuda:LOCAL_RANK (bitsandbytes quantizes there, nothing
here names a device), wraps the peft model in DistributedDataParallel, trains on every N-th batch,
and only rank 0 writes checkpoints and the model folder. This module and qat.py assume no device;
the shared loop (trainer.fit) is single-process today and needs these before such a launch works:
it autocasts with device type "cpu" and decides bf16 from the CPU's units, leaves each batch on
the CPU instead of the model's device, saves and restores only the CPU random state, does not
shard batches by rank, and every rank would write the checkpoint and take the run folder's lock
(the second one stops: "another training process"). Around it, bases.load_base loads every base
on the CPU and lora.greedy_tokens builds its prompts there.
"""

from __future__ import annotations

import ctypes
import logging
import platform
from pathlib import Path
from typing import Any

import torch

from fnedge.errors import FnedgeError
from fnedge.train.bases import Base, load_base
from fnedge.train.trainer import resolve_precision

INSTALL_HINT = "pip install 'fnedge[qlora]' (bitsandbytes), or leave out lora.quantize_base"


def bitsandbytes_or_error() -> Any:
    """The bitsandbytes module, or one FnedgeError line saying why it cannot be used here."""
    # its CPU backend logs, on import, that an optional hub kernel (`kernels`) is missing; it then
    # uses its own, so the warning is noise here
    cpu_backend_log = logging.getLogger("bitsandbytes.backends.cpu.ops")
    level = cpu_backend_log.level
    cpu_backend_log.setLevel(logging.ERROR)
    try:
        import bitsandbytes
    except Exception as e:  # ImportError, or OSError / RuntimeError from its native library
        raise FnedgeError(f"QLoRA needs bitsandbytes, which does not load here ({e.__class__.__name__}: "
                          f"{_first_line(e)}); {INSTALL_HINT}") from None
    finally:
        cpu_backend_log.setLevel(level)
    if not hasattr(bitsandbytes.nn, "Linear4bit"):
        raise FnedgeError(f"bitsandbytes {bitsandbytes.__version__} has no 4-bit layers; {INSTALL_HINT}")
    return bitsandbytes


def quantize_base(model, quant_type: str, precision: str = "fp32") -> list[str]:
    """Swap every Linear but the output head for a frozen 4-bit one, in place; returns their names."""
    bnb = bitsandbytes_or_error()
    compute_dtype = torch.bfloat16 if resolve_precision(precision) == "bf16" else torch.float32
    head = model.get_output_embeddings()
    linears = [(name, module) for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and module is not head]
    if not linears:
        raise FnedgeError("QLoRA: the base has no Linear layers to quantize")
    _check_cpu(linears[0][1].weight.device)
    for name, linear in linears:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, _four_bit(linear, quant_type, compute_dtype, bnb))
    names = [name for name, _ in linears]
    del linears, linear  # the float weights: give their memory back
    _release_freed_memory()
    model.is_loaded_in_4bit = True  # what transformers' loader sets: peft then uses its 4-bit LoRA layers
    _check_kernel(model.get_submodule(names[0]), quant_type)
    return names


def _four_bit(linear: torch.nn.Linear, quant_type: str, compute_dtype: torch.dtype, bnb: Any) -> torch.nn.Module:
    device = linear.weight.device
    layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                              compute_dtype=compute_dtype, compress_statistics=False,
                              quant_type=quant_type, device="meta")  # no throwaway float weight
    # moving a Params4bit to a device is what quantizes it
    layer.weight = bnb.nn.Params4bit(linear.weight.data, requires_grad=False, compress_statistics=False,
                                     quant_type=quant_type, module=layer).to(device)
    if linear.bias is not None:
        layer.bias = linear.bias
    layer.support_avx512bf16_for_cpu = False  # see the module docstring: its packed kernel has no backward
    return layer


def _release_freed_memory() -> None:
    # glibc keeps the freed float weights (allocated in many mid-sized pieces) in its heap: measured on
    # SmolLM2-135M's shape, RSS went from 521 MB (float) up to 619 MB after the swap, and to 227 MB
    # after malloc_trim. Large training tensors are mmapped and would never reuse that heap.
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):  # not glibc: nothing to do
        pass


def _check_cpu(device: torch.device) -> None:
    # bitsandbytes' x86-64 CPU build needs AVX2; elsewhere (aarch64, GPUs) the kernel check decides
    if device.type != "cpu" or platform.machine().lower() not in ("x86_64", "amd64"):
        return
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512"):
        raise FnedgeError(f"QLoRA on this CPU: bitsandbytes' 4-bit CPU kernels need AVX2, and torch reports "
                          f"{capability}; train without lora.quantize_base (plain LoRA)")


def _check_kernel(layer: torch.nn.Module, quant_type: str) -> None:
    """One forward and backward through a 4-bit layer: a platform without a kernel fails here, in one line."""
    device = layer.weight.device
    x = torch.randn(2, layer.in_features, device=device, requires_grad=True)
    try:
        layer(x).sum().backward()
        ok = x.grad is not None and bool(torch.isfinite(x.grad).all())
    except Exception as e:  # NotImplementedError, RuntimeError, ... from a missing backend
        raise FnedgeError(f"QLoRA: bitsandbytes has no working 4-bit {quant_type} kernel on {device.type} here "
                          f"({e.__class__.__name__}: {_first_line(e)}); train without lora.quantize_base") from None
    if not ok:
        raise FnedgeError(f"QLoRA: bitsandbytes' 4-bit {quant_type} layer gives no usable gradient on "
                          f"{device.type} here; train without lora.quantize_base")


def float_base_with_adapter(base_path: str | None, adapter_dir: Path) -> tuple[Any, Base]:
    """The base loaded again in float32 with the trained adapter on: what the merged folder is made from."""
    from peft import PeftModel

    base = load_base(base_path)  # the same markers at the same ids as in training
    return PeftModel.from_pretrained(base.model, str(adapter_dir)), base


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else "no message"
