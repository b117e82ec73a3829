"""K-quant GGUFs through llama.cpp's quantizer: they load, compute close to F16, and the build
records which type every tensor got (fc-nano's 128-wide rows cannot take K-quants at all)."""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
pytest.importorskip("llama_cpp")

from fnedge.chat_format import render  # noqa: E402
from fnedge.errors import FnedgeError  # noqa: E402
from fnedge.export.build import default_model_dir, export_build  # noqa: E402
from fnedge.export.gguf_writer import write_gguf  # noqa: E402
from fnedge.quantize import quantize_gguf  # noqa: E402
from fnedge.runtime.llama_backend import LlamaBackend  # noqa: E402

PROMPTS = ["明天上海会下雨吗？", "turn off the kitchen light", "hi"]
K_TYPES = {"Q4_K", "Q5_K", "Q6_K"}


@pytest.fixture(scope="module")
def kquant_build(tiny_model, tmp_path_factory) -> Path:
    return export_build("rpi4", model_dir=tiny_model, quants="f16,q4_k_m",
                        out_dir=tmp_path_factory.mktemp("kquant") / "rpi4")


def manifest_of(build: Path) -> dict:
    return json.loads((build / "manifest.json").read_text())


def artifact(build: Path, quant: str) -> dict:
    return next(a for a in manifest_of(build)["artifacts"] if a["quant"] == quant)


def prompt_logits(gguf_path: Path) -> np.ndarray:
    backend = LlamaBackend(gguf_path, n_threads=1, n_ctx=256)
    prompts = [render([{"role": "user", "content": text}], add_generation_prompt=True) for text in PROMPTS]
    return np.stack([backend.prompt_logits(backend.tokenize(p)) for p in prompts])


def rms_error(got: np.ndarray, want: np.ndarray) -> float:
    """RMS difference relative to the spread of the reference logits."""
    return float(np.sqrt(np.mean((got - want) ** 2)) / want.std())


def test_q4_k_m_loads_and_computes_close_to_f16(kquant_build):
    quantized = prompt_logits(kquant_build / "model-q4_k_m.gguf")
    reference = prompt_logits(kquant_build / "model-f16.gguf")
    assert np.isfinite(quantized).all()
    assert quantized.shape == reference.shape
    assert not np.array_equal(quantized, reference)  # it really is a different (quantized) file
    assert rms_error(quantized, reference) < 0.05  # measured 0.008 on the tiny model
    # Greedy picks agree, up to near-ties of a barely trained model: the token q4_k_m picks is
    # within a tenth of the logits' spread of the f16 model's best.
    picked = reference[np.arange(len(reference)), quantized.argmax(axis=1)]
    assert (picked >= reference.max(axis=1) - 0.1 * reference.std()).all()


def test_manifest_records_every_stored_type_and_each_fallback(kquant_build):
    record = artifact(kquant_build, "q4_k_m")
    stored = {t.name: t for t in gguf.GGUFReader(kquant_build / "model-q4_k_m.gguf").tensors}
    assert record["tensor_types"] == {name: t.tensor_type.name for name, t in stored.items()}
    matrices = {name for name, t in stored.items() if len(t.shape) == 2}
    # fc-nano: hidden 128 and intermediate 384, so no matrix row splits into 256-value super-blocks
    assert set(record["fallbacks"]) == matrices
    assert not K_TYPES & set(record["tensor_types"].values())
    assert record["tensor_types"]["blk.0.attn_q.weight"] == "Q5_0"  # llama.cpp's stand-in for Q4_K
    assert record["tensor_types"]["token_embd.weight"] == "Q8_0"  # the tied head: Q6_K -> Q8_0
    assert record["fallbacks"]["blk.0.ffn_down.weight"] == (
        "row length 384 is not a multiple of the K-quant super-block 256 -> Q5_0")
    assert record["tensor_types"]["output_norm.weight"] == "F32"
    assert "output_norm.weight" not in record["fallbacks"]


def test_manifest_names_the_quantizer_of_each_artifact(kquant_build):
    manifest = manifest_of(kquant_build)
    assert artifact(kquant_build, "q4_k_m")["quantizer"] == {
        "name": "llama.cpp", "package": "llama-cpp-python", "version": metadata.version("llama_cpp_python")}
    assert artifact(kquant_build, "q4_k_m")["quantized_from"] == "f16"
    assert artifact(kquant_build, "f16")["quantizer"] == {
        "name": "gguf-py", "package": "gguf", "version": metadata.version("gguf")}
    assert manifest["tools_versions"]["llama-cpp-python"] == metadata.version("llama_cpp_python")
    # the intermediate F16 is gone, and every file left is in the manifest
    assert {p.name for p in kquant_build.iterdir()} - {"manifest.json"} == set(manifest["files"])
    assert gguf.GGUFReader(kquant_build / "model-q4_k_m.gguf").fields["general.file_type"].contents() \
        == int(gguf.LlamaFileType.MOSTLY_Q4_K_M)


@pytest.mark.parametrize("quant, stand_in", [("q5_k_m", "Q5_1"), ("q6_k", "Q8_0")])
def test_other_k_quants_load_with_their_fallback_types(kquant_build, tmp_path, quant, stand_in):
    out = tmp_path / f"model-{quant}.gguf"
    info = quantize_gguf(kquant_build / "model-f16.gguf", out, quant, threads=1)
    assert info["tensors"]["blk.1.ffn_up.weight"] == stand_in
    assert info["fallbacks"]["blk.1.ffn_up.weight"].endswith(f"-> {stand_in}")
    assert np.isfinite(prompt_logits(out)).all()


@pytest.mark.skipif(not (default_model_dir() / "model.safetensors").is_file(), reason="no built-in model")
def test_256_wide_model_gets_real_k_quants_without_fallbacks(tmp_path):
    f16 = tmp_path / "default-f16.gguf"
    write_gguf(default_model_dir(), f16, "f16")
    info = quantize_gguf(f16, tmp_path / "default-q4_k_m.gguf", "q4_k_m", threads=1)
    assert info["fallbacks"] == {}
    assert info["tensors"]["blk.0.attn_q.weight"] == "Q4_K"
    assert info["tensors"]["token_embd.weight"] == "Q6_K"  # the Q4_K_M recipe's tied output head
    assert set(info["tensors"].values()) == {"F32", "Q4_K", "Q6_K"}


def test_thread_count_does_not_change_the_bytes(kquant_build, tmp_path):
    one = quantize_gguf(kquant_build / "model-f16.gguf", tmp_path / "one.gguf", "q4_k_m", threads=1)
    two = quantize_gguf(kquant_build / "model-f16.gguf", tmp_path / "two.gguf", "q4_k_m", threads=2)
    assert Path(one["path"]).read_bytes() == Path(two["path"]).read_bytes()
    assert Path(one["path"]).read_bytes() == (kquant_build / "model-q4_k_m.gguf").read_bytes()


def _bare_llama_gguf(path: Path) -> None:
    """A well-formed GGUF that llama.cpp cannot load as a model (no hyperparameters)."""
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_tensor("token_embd.weight", np.zeros((4, 256), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_bad_inputs_are_user_errors_naming_the_file(kquant_build, tiny_model, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    out_dir = tmp_path / "out"
    not_gguf = inputs / "notes.gguf"
    not_gguf.write_text("this is not a model")
    truncated = inputs / "truncated.gguf"
    truncated.write_bytes((kquant_build / "model-f16.gguf").read_bytes()[:-4096])
    already_quantized = inputs / "q8.gguf"
    write_gguf(tiny_model, already_quantized, "q8_0")
    bare = inputs / "bare.gguf"
    _bare_llama_gguf(bare)
    cases = [(not_gguf, "not a GGUF file"), (inputs / "missing.gguf", "GGUF file not found"),
             (truncated, "damaged GGUF file"), (already_quantized, "holds Q8_0 tensors"),
             (bare, r"llama.cpp could not quantize it to q4_k_m \((?!no message).+\)")]
    for source, message in cases:
        with pytest.raises(FnedgeError, match=f"^{re.escape(str(source))}: {message}"):
            quantize_gguf(source, out_dir / "model.gguf", "q4_k_m")
    with pytest.raises(FnedgeError, match="unknown llama.cpp quant type 'q3_k'"):
        quantize_gguf(kquant_build / "model-f16.gguf", out_dir / "model.gguf", "q3_k")
    assert not out_dir.exists() or list(out_dir.iterdir()) == []  # no output, no temp file left


def test_export_accepts_k_quants_only_by_name(tiny_model, tmp_path):
    with pytest.raises(FnedgeError, match="unknown quant type 'q4_k_s'"):
        export_build("rpi4", model_dir=tiny_model, quants="q4_k_m,q4_k_s", out_dir=tmp_path / "b")
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.partial").exists()
