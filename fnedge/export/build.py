"""`fnedge export`: a model folder -> a device build folder with a checksummed manifest.

    builds/rpi4/
      model-q8_0.gguf      one GGUF per quant type (K-quants such as q4_k_m by llama.cpp's quantizer)
      model-onnx-int8.onnx ONNX decoders with a KV cache (and `*-ort` quants: the same graph in
                           ONNX Runtime's ORT format, model-onnx-int8.ort, for ONNX Runtime Mobile)
      tokenizer.json ...   the HF tokenizer files (for other runtimes)
      tools.json           the catalog the model was trained for
      fnedge.json          the model's training record
      manifest.json        every choice made (and which quantizer made it), each artifact's parity
                           with the torch model (parity.py), the size and sha256 of every file,
                           and with `eval_cases` each artifact's dev-set metrics
      README.md            how to run it with fnedge and with llama.cpp

The build is assembled in a staging folder and renamed into place only when complete; the
dev-set evaluation runs on the staged build, before it is renamed. With `adapter_dir` (a peft LoRA
adapter) the adapter is first merged into the base inside the staging folder, and that merged
folder is exported like any model folder, then deleted (see adapter.py).
"""

from __future__ import annotations

import json
import shutil
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from fnedge import __version__
from fnedge.catalog import model_catalog
from fnedge.devices import DeviceProfile, get_device
from fnedge.devices.registry import GGUF_QUANTS, KNOWN_QUANTS, ONNX_QUANTS, ORT_QUANTS
from fnedge.errors import FnedgeError
from fnedge.export.budget import estimate_budget, over_budget_advice
from fnedge.export.parity import check_parity
from fnedge.io import sha256_file, write_json_atomic, write_text_atomic
from fnedge.quantize.llama_quantizer import LLAMA_QUANTS

MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
COPIED_FILES = ("tokenizer.json", "tokenizer_config.json", "fnedge.json")
GGUF_PY_QUANTS = tuple(q for q in GGUF_QUANTS if q not in LLAMA_QUANTS)  # written by gguf-py itself
MERGED_DIR = ".merged-model"  # inside the staging folder; dot-prefixed and deleted before the rename


def default_model_dir() -> Path:
    return Path(str(resources.files("fnedge") / "models" / "default"))


def check_model_dir(model_dir: Path) -> dict[str, Any]:
    """The folder holds a complete model; returns its fnedge.json record (or {})."""
    if not model_dir.is_dir():
        raise FnedgeError(f"{model_dir}: model folder not found")
    for name in MODEL_FILES:
        if not (model_dir / name).is_file():
            raise FnedgeError(f"{model_dir}: incomplete model folder (missing {name})")
    record = model_dir / "fnedge.json"
    return json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}


def parse_quants(text: str | None, device: DeviceProfile) -> list[str]:
    quants = [q.strip().lower() for q in text.split(",") if q.strip()] if text else list(device.default_quants)
    for quant in quants:
        if quant not in KNOWN_QUANTS:
            raise FnedgeError(f"unknown quant type '{quant}' (this version writes: {', '.join(KNOWN_QUANTS)})")
        if quant not in device.allowed_quants:
            raise FnedgeError(f"quant type '{quant}' is not allowed for device '{device.name}' "
                              f"(allowed: {', '.join(device.allowed_quants)})")
    return list(dict.fromkeys(quants))


def export_build(device_name: str, model_dir: Path | None = None, quants: str | None = None,
                 out_dir: Path | None = None, eval_cases: Path | None = None,
                 show_progress: bool = False, adapter_dir: Path | None = None,
                 allow_over_budget: bool = False) -> Path:
    """Write the build; with `eval_cases` (a cases JSONL) also score every artifact on it, and with
    `adapter_dir` export the base (`model_dir`, else the adapter's own local base) merged with it."""
    device = get_device(device_name)
    if adapter_dir is not None:
        from fnedge.export.adapter import adapter_base_dir

        model_dir = adapter_base_dir(Path(adapter_dir), Path(model_dir) if model_dir else None)
    model_dir = Path(model_dir) if model_dir else default_model_dir()
    record = check_model_dir(model_dir)
    chosen = parse_quants(quants, device)
    cases = _load_eval_cases(eval_cases)  # a malformed file fails before any export work
    out_dir = Path(out_dir) if out_dir else Path("builds") / device.name
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        source, adapter = model_dir, None
        if adapter_dir is not None:
            from fnedge.export.adapter import merge_adapter

            source = staging / MERGED_DIR
            adapter = merge_adapter(Path(adapter_dir), model_dir, source)
        artifacts = [write_gguf_artifact(source, staging, q) if q in GGUF_PY_QUANTS
                     else write_llama_quant_artifact(source, staging, q)
                     for q in chosen if q in GGUF_QUANTS]
        artifacts += write_onnx_artifacts(source, staging, [q for q in chosen if q in ONNX_QUANTS + ORT_QUANTS])
        for name in COPIED_FILES:
            if (source / name).is_file():
                shutil.copyfile(source / name, staging / name)
        check_parity(source, staging, artifacts,
                     context_length=min(device.context_length, _trained_positions(source)))
        if adapter is not None:
            shutil.rmtree(source)
        write_json_atomic(staging / "tools.json", model_catalog(record, str(model_dir / "fnedge.json")).to_openai())
        write_text_atomic(staging / "README.md", _device_readme(device, artifacts))
        budget = estimate_budget(device, staging, artifacts)
        if budget and budget["verdict"] == "misses" and not allow_over_budget:
            raise FnedgeError(over_budget_advice(device, budget))
        manifest = _manifest(device, model_dir, record, artifacts, staging, adapter)
        manifest["budget_estimate"] = budget
        write_json_atomic(staging / "manifest.json", manifest)
        if cases is not None:
            from fnedge.export.dev_metrics import add_dev_metrics

            # the manifest lists every other file, so it can be rewritten after the evaluation
            add_dev_metrics(manifest, staging, cases, Path(eval_cases), device, show_progress)
            write_json_atomic(staging / "manifest.json", manifest)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def write_gguf_artifact(model_dir: Path, staging: Path, quant: str) -> dict[str, Any]:
    from fnedge.export.gguf_writer import write_gguf

    file = f"model-{quant}.gguf"
    info = write_gguf(model_dir, staging / file, quant=quant)
    return {"file": file, "format": "gguf", "quant": quant,
            "quantizer": {"name": "gguf-py", "package": "gguf", "version": _version("gguf")},
            "tensor_types": info.get("tensors", {}), "fallbacks": info.get("fallbacks", {})}


def write_llama_quant_artifact(model_dir: Path, staging: Path, quant: str) -> dict[str, Any]:
    """A K-quant GGUF: our writer's F16 file, re-quantized by llama.cpp, then the F16 deleted."""
    from fnedge.export.gguf_writer import write_gguf
    from fnedge.quantize.llama_quantizer import quantize_gguf

    file = f"model-{quant}.gguf"
    # dot-prefixed and deleted below, so it never reaches the manifest's file list
    intermediate = staging / f".model-{quant}.f16.gguf"
    try:
        write_gguf(model_dir, intermediate, quant="f16")
        info = quantize_gguf(intermediate, staging / file, quant)
    finally:
        intermediate.unlink(missing_ok=True)
    return {"file": file, "format": "gguf", "quant": quant, "quantizer": info["quantizer"],
            "quantized_from": "f16", "tensor_types": info["tensors"], "fallbacks": info["fallbacks"]}


_RECORDED_ELSEWHERE = {"file", "format", "quant", "bytes", "sha256", "inputs", "outputs", "quantized_matmuls"}


def write_onnx_artifacts(model_dir: Path, staging: Path, quants: list[str]) -> list[dict[str, Any]]:
    """fp32 ONNX with KV cache first; int8/int4 are quantized from it, `*-ort` quants converted from
    the ONNX file of the same name; every .onnx file is kept only if asked for."""
    if not quants:
        return []
    from fnedge.export.onnx_export import export_onnx, quantize_onnx

    fp32 = staging / "model-onnx-fp32.onnx"
    infos = {"onnx-fp32": export_onnx(model_dir, fp32)}
    for base in dict.fromkeys(q.removesuffix("-ort") for q in quants):
        if base != "onnx-fp32":
            infos[base] = quantize_onnx(fp32, staging / f"model-{base}.onnx", base.removeprefix("onnx-"))
    artifacts = [_onnx_artifact(q, infos[q]) if q in ONNX_QUANTS else _ort_artifact(q, infos, staging)
                 for q in quants]
    for base in infos:
        if base not in quants:
            (staging / f"model-{base}.onnx").unlink()
    return artifacts


def _onnx_artifact(quant: str, info: dict[str, Any]) -> dict[str, Any]:
    choices = {k: v for k, v in info.items() if k not in _RECORDED_ELSEWHERE}
    if "quantized_matmuls" in info:
        choices["quantized_matmuls"] = len(info["quantized_matmuls"])
    quantizer = None if quant == "onnx-fp32" else {"name": "onnxruntime", "package": "onnxruntime",
                                                   "version": _version("onnxruntime")}
    return {"file": f"model-{quant}.onnx", "format": "onnx", "quant": quant, "quantizer": quantizer,
            "choices": choices}


def _ort_artifact(quant: str, infos: dict[str, dict[str, Any]], staging: Path) -> dict[str, Any]:
    """The ONNX artifact of the same quant, converted. Its format stays "onnx" (onnxruntime loads
    both kinds of file); `serialization` says which kind it is."""
    from fnedge.export.ort_format import convert_to_ort

    base = quant.removesuffix("-ort")
    artifact = _onnx_artifact(base, infos[base])
    file = f"model-{base}.ort"
    artifact["choices"]["ort_conversion"] = convert_to_ort(staging / artifact["file"], staging / file)
    return {**artifact, "file": file, "quant": quant, "serialization": "ort"}


def _load_eval_cases(path: Path | None) -> list[Any] | None:
    if path is None:
        return None
    from fnedge.eval.cases import load_cases

    return load_cases(path)




def _manifest(device: DeviceProfile, model_dir: Path, record: dict[str, Any],
              artifacts: list[dict[str, Any]], staging: Path,
              adapter: dict[str, Any] | None = None) -> dict[str, Any]:
    files = {}
    for path in sorted(p for p in staging.iterdir() if p.is_file()):
        files[path.name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    for artifact in artifacts:
        artifact.update(bytes=files[artifact["file"]]["bytes"], sha256=files[artifact["file"]]["sha256"])
    model = {
        "preset": record.get("preset"),
        "source": str(model_dir.name),
        "source_sha256": sha256_file(model_dir / "model.safetensors"),
        "catalog_sha256": record.get("catalog_sha256"),
        "generalist": bool(record.get("generalist", False)),
        "copied_arguments": record.get("copied_arguments") or {},
    }
    if adapter is not None:  # the artifacts hold the base with this adapter merged in
        model.update(merged=True, adapter=adapter)
    return {
        "format_version": 1,
        "name": staging.name.removesuffix(".partial"),
        "device": device.name,
        "primary": artifacts[0]["file"],
        "model": model,
        # The device's context, but never past the positions the model was trained for.
        "runtime": {"threads": device.threads,
                    "context_length": min(device.context_length, _trained_positions(model_dir)),
                    "latency_budget_ms": device.latency_budget_ms},
        "tools_versions": {"fnedge": __version__, "gguf": _version("gguf"), "torch": _version("torch"),
                           "llama-cpp-python": _version("llama_cpp_python")},
        "artifacts": artifacts,
        "files": files,
    }


def _trained_positions(model_dir: Path) -> int:
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return int(config.get("max_position_embeddings", 1 << 30))


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _device_readme(device: DeviceProfile, artifacts: list[dict[str, Any]]) -> str:
    gguf = next((a["file"] for a in artifacts if a["format"] == "gguf"), None)
    text = f"""# fnedge build for {device.name}

{device.description}. Threads {device.threads}, context {device.context_length} tokens.

With fnedge (checks every file against manifest.json first):

    fnedge run . "明天上海会下雨吗？"
"""
    if gguf:
        text += f"""
With llama.cpp (the chat template inside the GGUF renders the Hermes `<tool_call>` format):

    llama-cli -m {gguf} -t {device.threads} -c {device.context_length} -cnv --jinja
    llama-server -m {gguf} -t {device.threads} -c {device.context_length} --jinja
"""
    if device.name == "android-arm64":
        text += _android_section(device, [a["file"] for a in artifacts if a.get("serialization") == "ort"])
    return text + """
The model knows the tools in tools.json by training; it does not need their schemas in the prompt.
"""


def _android_section(device: DeviceProfile, ort_files: list[str]) -> str:
    """On Android we suggest ONNX Runtime Mobile with an ORT-format file (see ort_format.py)."""
    have = (f"This build has {', '.join(ort_files)}." if ort_files else
            "This build has none: export with `--quant onnx-int8-ort`.")
    return f"""
Suggested on Android: ONNX Runtime Mobile (Maven `com.microsoft.onnxruntime:onnxruntime-android`)
with an `.ort` file, the ONNX graph in ONNX Runtime's own format: it loads faster, and it is the
one format reduced-size ONNX Runtime builds read. {have}
Use an ONNX Runtime no older than the one that converted the file (in manifest.json, under the
artifact's choices.ort_conversion). Create the session with {device.threads} intra-op threads.
Inputs: input_ids, attention_mask and past_key_values.* (length 0 on the first call); outputs:
logits and present.*, the next call's past. Tokenize with tokenizer.json; stop at <|im_end|>.
"""
