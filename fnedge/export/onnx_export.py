"""Write a trained fnedge model folder as an ONNX decoder with a KV cache, and quantize it.

`export_onnx(model_dir, out_path)` writes one fp32 graph used both for the prompt (prefill) and
for each generated token (decode), in the layout optimum and onnxruntime-genai use for
decoder-only models:

    inputs   input_ids                  int64 [batch_size, sequence_length]
             attention_mask             int64 [batch_size, TOTAL]
             past_key_values.{i}.key    fp32  [batch_size, kv_heads, past_sequence_length, head_dim]
             past_key_values.{i}.value  (same)
    outputs  logits                     fp32  [batch_size, sequence_length, vocab]
             present.{i}.key            fp32  [batch_size, kv_heads, TOTAL, head_dim]
             present.{i}.value          (same)

    TOTAL is the one axis name "past_sequence_length + sequence_length", as optimum writes it.

There is no `position_ids` input: positions are derived inside the graph from the attention mask
(cumulative sum - 1, as `transformers.generate` does), so left-padded batches get the right RoPE
positions and a caller only keeps the mask. The first call passes past tensors with 0 positions.

Export choices (all in the returned dict, for the build manifest):

* `torch.onnx.export(dynamo=True)`. The TorchScript tracer also runs on transformers 5's
  `DynamicCache`, but it bakes the Python branches on the cache's emptiness and on the mask's
  padding into the graph (TracerWarnings); `torch.export` traces them symbolically.
* A thin wrapper module takes the flat past tensors, builds a `DynamicCache`, and returns the
  flat presents, so the graph has one named input/output per cache tensor.
* Eager attention (plain MatMul/Softmax): every ONNX runtime knows these ops, and the attention
  score MatMuls have no weights, so quantizers leave them alone.
* Tied embeddings stay one tensor: the Gather uses it and the head MatMul uses its Transpose,
  which ONNX Runtime folds once at load. (So quantizers keep the head in fp32, see below.)
* Deterministic bytes: exporter stack traces and source paths (node metadata) are removed, nodes
  and weights get names from their modules (`model.layers.0.mlp.down_proj/MatMul`), and the
  protobuf is serialized deterministically. Written atomically (temp file + `os.replace`).

`quantize_onnx(fp32_path, out_path, kind)` writes int8 (onnxruntime's dynamic quantization:
int8 weights per output channel, uint8 activations quantized per call, on the weight MatMuls) or
int4 (MatMulNBits, block 32, symmetric, weight-only, fp32 activations). The int8 kernels multiply
uint8 by int8; on x86 CPUs with AVX2 but no VNNI, onnxruntime's docs warn that this can saturate,
and it does: on such a CPU (session 19) the test model's int8 logits were off by 0.18-0.22 of their
spread (rms/std) with full-range weights, 0.063-0.078 with `reduce_range` (7-bit weights), about
what full range gives on a VNNI CPU (<= 0.062). So weights use the reduced range: one file runs well
on every x86 CPU, and ARM and VNNI CPUs give up one weight bit.

Only MatMuls whose weight is a stored tensor are quantized: the attention score MatMuls have none,
and the tied head's weight is the runtime Transpose of the embedding table, so the head and the
embedding lookup stay fp32 (the GGUF path likewise keeps the head above 4 bits).
"""

from __future__ import annotations

import logging
import re
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from fnedge.errors import FnedgeError
from fnedge.io import sha256_file, write_bytes_atomic

REQUIRED_FILES = ("config.json", "model.safetensors")
OPSET = 18  # ONNX Runtime >= 1.14 (and its mobile builds) runs opset 18
QUANT_KINDS = ("int8", "int4")
INT4_BLOCK_SIZE = 32

# optimum's axis names: onnxruntime-genai and optimum's ORTModelForCausalLM read these
BATCH = "batch_size"
SEQUENCE = "sequence_length"
PAST = "past_sequence_length"
TOTAL = "past_sequence_length + sequence_length"

_PROTOBUF_LIMIT = 2**31 - 1  # a single-file ModelProto cannot be larger


def cache_names(num_layers: int, prefix: str) -> list[str]:
    """`past_key_values` (inputs) or `present` (outputs), key before value, layer by layer."""
    return [f"{prefix}.{i}.{kind}" for i in range(num_layers) for kind in ("key", "value")]


def export_onnx(model_dir: Path, out_path: Path) -> dict[str, Any]:
    """Export `model_dir` (a Hugging Face Llama folder) as an fp32 ONNX decoder with KV cache."""
    model_dir, out_path = Path(model_dir), Path(out_path)
    _check_model_dir(model_dir)
    model = _load_model(model_dir)
    proto = _trace_to_onnx(model)
    _clean_graph(proto)
    data = proto.SerializeToString(deterministic=True)
    if len(data) > _PROTOBUF_LIMIT:
        raise FnedgeError(f"{model_dir}: the ONNX graph would be {len(data)} bytes, "
                          f"over protobuf's 2 GB limit")
    _check_onnx(proto, model_dir)
    write_bytes_atomic(out_path, data)
    config = model.config
    return {
        "file": out_path.name,
        "format": "onnx",
        "quant": "fp32",
        "bytes": len(data),
        "sha256": sha256_file(out_path),
        "opset": OPSET,
        "ir_version": proto.ir_version,
        "exporter": "torch.onnx.export(dynamo=True)",
        "attention": "eager",
        "position_ids": "derived in the graph from attention_mask",
        "inputs": [i.name for i in proto.graph.input],
        "outputs": [o.name for o in proto.graph.output],
        "num_layers": config.num_hidden_layers,
        "kv_heads": config.num_key_value_heads,
        "head_dim": config.hidden_size // config.num_attention_heads,
        "vocab_size": config.vocab_size,
        "tools_versions": {p: _version(p) for p in ("torch", "transformers", "onnx", "onnxscript")},
    }


def _check_model_dir(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise FnedgeError(f"{model_dir}: model folder not found")
    for name in REQUIRED_FILES:
        if not (model_dir / name).is_file():
            raise FnedgeError(f"{model_dir}: incomplete model folder (missing {name})")


def _load_model(model_dir: Path):
    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    config = AutoConfig.from_pretrained(str(model_dir))
    if config.model_type != "llama":
        raise FnedgeError(f"{model_dir}: model type '{config.model_type}' is not llama")
    # Eager attention: plain MatMul/Softmax in the graph instead of a decomposed SDPA.
    return LlamaForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32,
                                            attn_implementation="eager").eval()


def _flat_cache_decoder(model):
    """The model as a module of flat tensors: (input_ids, attention_mask, *past) -> (logits, *present)."""
    import torch
    from transformers import DynamicCache

    class FlatCacheDecoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model  # initializers come out as "model.<HF name>"; the prefix is dropped later

        def forward(self, input_ids, attention_mask, *past):
            pairs = [(past[i], past[i + 1]) for i in range(0, len(past), 2)]
            cache = DynamicCache(pairs, config=self.model.config)
            # Positions from the mask (left padding gets position 1, never attended), as generate does.
            positions = attention_mask.long().cumsum(-1) - 1
            positions = positions.masked_fill(attention_mask == 0, 1)[:, -input_ids.shape[1]:]
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                             past_key_values=cache, use_cache=True)
            present = [t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)]
            return (out.logits, *present)

    return FlatCacheDecoder().eval()


def _trace_to_onnx(model):
    import torch
    from torch.export import Dim

    config = model.config
    layers, kv_heads = config.num_hidden_layers, config.num_key_value_heads
    head_dim = config.hidden_size // config.num_attention_heads
    # Example sizes >= 2 on every dynamic axis: torch.export specializes axes it sees at 0 or 1.
    batch, seq, past = 2, 3, 4
    example = (torch.zeros(batch, seq, dtype=torch.long), torch.ones(batch, past + seq, dtype=torch.long),
               *[torch.zeros(batch, kv_heads, past, head_dim) for _ in range(2 * layers)])
    batch_dim, seq_dim, past_dim = Dim(BATCH), Dim(SEQUENCE), Dim(PAST)
    dynamic_shapes = {
        "input_ids": {0: batch_dim, 1: seq_dim},
        # torch.export cannot declare a dim as past + seq; _clean_graph names it
        "attention_mask": {0: batch_dim, 1: Dim.AUTO},
        "past": tuple({0: batch_dim, 2: past_dim} for _ in range(2 * layers)),
    }
    with warnings.catch_warnings(), torch.no_grad():
        # The exporter warns that axes sharing one Dim keep one name -- which is the point.
        warnings.filterwarnings("ignore", message=".*axis name.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        program = torch.onnx.export(
            _flat_cache_decoder(model), example, dynamo=True, opset_version=OPSET, optimize=True,
            input_names=["input_ids", "attention_mask", *cache_names(layers, "past_key_values")],
            output_names=["logits", *cache_names(layers, "present")],
            dynamic_shapes=dynamic_shapes, external_data=False, verbose=False, report=False)
    return program.model_proto


def _clean_graph(proto) -> None:
    """Stable, readable names; no exporter metadata (stack traces carry local source paths)."""
    graph = proto.graph
    renames = _initializer_names(graph)
    node_names: Counter[str] = Counter()
    for node in graph.node:
        scope = _module_scope(node)
        base = f"{scope}/{node.op_type}" if scope else node.op_type
        node_names[base] += 1
        node.name = base if node_names[base] == 1 else f"{base}_{node_names[base] - 1}"
        node.input[:] = [renames.get(name, name) for name in node.input]
        del node.metadata_props[:]
    for tensor in graph.initializer:
        tensor.name = renames.get(tensor.name, tensor.name)
    for value in [*graph.input, *graph.output, *graph.value_info]:
        del value.metadata_props[:]
    del graph.metadata_props[:]
    del proto.metadata_props[:]
    # torch.export cannot express the mask's length as past + sequence, so it gets its own symbol.
    mask = next(i for i in graph.input if i.name == "attention_mask")
    mask.type.tensor_type.shape.dim[1].dim_param = TOTAL
    proto.doc_string = "fnedge Llama decoder with KV cache (see fnedge/export/onnx_export.py)"


def _module_scope(node) -> str:
    """The HF module a node came from ("model.layers.0.mlp.down_proj"), from exporter metadata."""
    scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), "")
    modules = re.findall(r"'([^']*)'", scopes)[:-1]  # the last entry is the aten op, not a module
    return modules[-1].removeprefix("model.") if modules else ""


def _initializer_names(graph) -> dict[str, str]:
    """Old -> new initializer names: HF names, and `<module>.weight_T` for folded transposed weights."""
    renames = {t.name: t.name.removeprefix("model.") for t in graph.initializer
               if t.name.startswith("model.")}
    stored = {t.name for t in graph.initializer}
    for node in graph.node:
        scope = _module_scope(node)
        if node.op_type == "MatMul" and scope and len(node.input) == 2 and node.input[1] in stored \
                and node.input[1] not in renames:
            renames[node.input[1]] = f"{scope}.weight_T"
    return renames


def _check_onnx(proto, source: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise FnedgeError(f"{source}: the ONNX graph made from it is invalid: {exc}") from None


# --- quantization ----------------------------------------------------------------------------


def weight_matmuls(proto) -> list[str]:
    """Names of the MatMul nodes whose second input is a stored weight (the quantizable ones)."""
    stored = {t.name for t in proto.graph.initializer}
    return [n.name for n in proto.graph.node if n.op_type == "MatMul" and n.input[1] in stored]


def quantize_onnx(fp32_path: Path, out_path: Path, kind: str) -> dict[str, Any]:
    """Quantize an fp32 export to `kind` ("int8" or "int4"); returns the choices made."""
    import onnx

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if kind not in QUANT_KINDS:
        raise FnedgeError(f"unknown ONNX quant kind '{kind}' (choose from {', '.join(QUANT_KINDS)})")
    if not fp32_path.is_file():
        raise FnedgeError(f"{fp32_path}: ONNX file not found")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise FnedgeError("onnxruntime is not installed: pip install onnxruntime onnx-ir") from None
    source = onnx.load(str(fp32_path))
    targets = weight_matmuls(source)
    kept = [n.name for n in source.graph.node if n.op_type == "MatMul" and n.name not in targets]
    quantized = _quantize_int8(fp32_path, targets) if kind == "int8" else _quantize_int4(source, kept)
    ops = Counter(n.op_type for n in quantized.graph.node)
    quantized_op = "MatMulInteger" if kind == "int8" else "MatMulNBits"
    if ops[quantized_op] != len(targets):  # a silently skipped weight would make the record a lie
        raise FnedgeError(f"{fp32_path}: {kind} quantization produced {ops[quantized_op]} {quantized_op} "
                          f"nodes for {len(targets)} weight MatMuls")
    _check_onnx(quantized, fp32_path)
    data = quantized.SerializeToString(deterministic=True)
    write_bytes_atomic(out_path, data)
    choices = {
        "file": out_path.name,
        "format": "onnx",
        "quant": kind,
        "bytes": len(data),
        "sha256": sha256_file(out_path),
        "source_sha256": sha256_file(fp32_path),
        "quantized_matmuls": targets,
        "kept_fp32": {"matmuls": kept, "embedding": "Gather on the (tied) embedding table"},
        "op_counts": {op: ops[op] for op in sorted(ops)},
        "tools_versions": {p: _version(p) for p in ("onnx", "onnxruntime", "onnx-ir")},
    }
    if kind == "int8":
        choices.update(method="onnxruntime.quantization.quantize_dynamic", weight_type="QInt8",
                       per_channel=True, reduce_range=True, activations="uint8, quantized per call")
    else:
        choices.update(method="onnxruntime MatMulNBitsQuantizer (DEFAULT / RTN)", bits=4,
                       block_size=INT4_BLOCK_SIZE, symmetric=True, accuracy_level=None,
                       activations="fp32 (accuracy_level unset)")
    return choices


def _quantize_int8(fp32_path: Path, targets: list[str]):
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic only writes files; it goes to a scratch folder and comes back as a proto.
    with tempfile.TemporaryDirectory(prefix="fnedge-int8-") as scratch, _without_preprocess_advice():
        scratch_out = Path(scratch) / "model.onnx"
        # Per output channel: on the test model it lifts top-1 agreement with fp32 from 0.79 to 0.96
        # for 2% more bytes.
        quantize_dynamic(fp32_path, scratch_out, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         nodes_to_quantize=targets, per_channel=True, reduce_range=True)
        return onnx.load(str(scratch_out))


class _DropPreprocessAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextmanager
def _without_preprocess_advice() -> Iterator[None]:
    """quantize_dynamic advises shape-inference pre-processing on the root logger at every call;
    the exporter already stored every shape, so the line is noise in `fnedge export`."""
    drop = _DropPreprocessAdvice()
    logging.getLogger().addFilter(drop)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(drop)


def _quantize_int4(source, excluded: list[str]):
    from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                 MatMulNBitsQuantizer)

    config = DefaultWeightOnlyQuantConfig(block_size=INT4_BLOCK_SIZE, is_symmetric=True, bits=4,
                                          op_types_to_quantize=("MatMul",))
    # nodes_to_include would only add nodes to the op-type selection; exclusion is what restricts it.
    quantizer = MatMulNBitsQuantizer(source, bits=4, block_size=INT4_BLOCK_SIZE, is_symmetric=True,
                                     nodes_to_exclude=excluded, op_types_to_quantize=("MatMul",),
                                     algo_config=config)
    quantizer.process()
    return quantizer.model.model


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


__all__ = ["QUANT_KINDS", "cache_names", "export_onnx", "quantize_onnx", "weight_matmuls"]
