"""ONNX export: onnxruntime must compute like the torch model, and really use its KV cache.

A tiny random fc-nano model (seeded, init scaled so greedy decoding has no near-ties) and a
tokenizer trained on a small mixed Chinese/English corpus are made once per module, exported to
fp32, then quantized to int8 and int4.
"""

from __future__ import annotations

import copy
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from fnedge.chat_format import render  # noqa: E402
from fnedge.errors import FnedgeError  # noqa: E402
from fnedge.export.onnx_export import (cache_names, export_onnx, quantize_onnx,  # noqa: E402
                                       weight_matmuls)
from fnedge.runtime.onnx_backend import OnnxBackend  # noqa: E402
from conftest import make_model  # noqa: E402

CITIES = ["上海", "北京", "深圳", "Paris", "London", "Tokyo"]
SENTENCES = [
    "What is the weather in {city} tomorrow?",
    "Set a timer for {n} minutes, please.",
    "Remind me to call Alice at {n} o'clock.",
    "明天{city}会下雨吗？",
    "帮我设置一个{n}分钟的计时器。",
    "今天{city}的气温是多少度？",
]
PROMPTS = [
    render([{"role": "user", "content": "明天上海会下雨吗？"}], add_generation_prompt=True),
    "Set a timer for 5 minutes",
    "请把这段话翻译成英文",
]
from fnedge.train.presets import make_config  # noqa: E402

LAYERS = make_config("fc-nano").num_hidden_layers
KV_HEADS = make_config("fc-nano").num_key_value_heads
HEAD_DIM = make_config("fc-nano").hidden_size // make_config("fc-nano").num_attention_heads


def corpus() -> list[str]:
    rng = random.Random(0)
    texts = []
    for _ in range(120):
        text = rng.choice(SENTENCES).format(city=rng.choice(CITIES), n=rng.randint(1, 99))
        texts += [text, render([{"role": "user", "content": text},
                                {"role": "assistant", "content": f"OK: {text}"}])]
    return texts


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from fnedge.train.presets import make_config
    from fnedge.train.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("onnx")
    tokenizer = train_tokenizer(corpus(), vocab_size=600)
    model_dir = root / "nano"
    model = make_model(model_dir, tokenizer, make_config("fc-nano", len(tokenizer), context_length=256))
    export = export_onnx(model_dir, root / "model-fp32.onnx")
    quants = {kind: quantize_onnx(root / "model-fp32.onnx", root / f"model-{kind}.onnx", kind)
              for kind in ("int8", "int4")}
    return {"root": root, "dir": model_dir, "tokenizer": tokenizer, "model": model,
            "export": export, "quants": quants}


def backend(built, kind: str = "fp32") -> OnnxBackend:
    return OnnxBackend(built["root"] / f"model-{kind}.onnx", built["dir"], n_threads=1)


def torch_logits(model, tokens: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].numpy()


def session_logits(onnx_backend: OnnxBackend, tokens: list[int]) -> np.ndarray:
    """Every position's logits from one prefill call."""
    feed = {"input_ids": np.array([tokens], dtype=np.int64),
            "attention_mask": np.ones((1, len(tokens)), dtype=np.int64),
            **dict(zip(onnx_backend.cache.past_names, onnx_backend.cache.empty()))}
    return onnx_backend.session.run(["logits"], feed)[0][0]


def rms_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.sqrt(np.mean((got - want) ** 2)) / want.std())


# --- the fp32 graph --------------------------------------------------------------------------


def dims(value) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_graph_is_valid_and_laid_out_like_optimum(built):
    proto = onnx.load(str(built["root"] / "model-fp32.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    inputs = {i.name: dims(i) for i in proto.graph.input}
    outputs = {o.name: dims(o) for o in proto.graph.output}
    assert list(inputs) == ["input_ids", "attention_mask", *cache_names(LAYERS, "past_key_values")]
    assert list(outputs) == ["logits", *cache_names(LAYERS, "present")]
    assert inputs["input_ids"] == ["batch_size", "sequence_length"]
    assert inputs["attention_mask"] == ["batch_size", "past_sequence_length + sequence_length"]
    assert inputs["past_key_values.3.value"] == ["batch_size", KV_HEADS, "past_sequence_length", HEAD_DIM]
    assert outputs["logits"] == ["batch_size", "sequence_length", len(built["tokenizer"])]
    assert outputs["present.0.key"] == ["batch_size", KV_HEADS, "past_sequence_length + sequence_length", HEAD_DIM]
    # one copy of the tied embedding table, and no local paths from exporter stack traces
    embedding = built["model"].get_input_embeddings().weight.detach().float().numpy()
    assert sum(list(t.dims) == list(embedding.shape) and np.allclose(onnx.numpy_helper.to_array(t), embedding)
               for t in proto.graph.initializer) == 1
    assert not any(node.metadata_props for node in proto.graph.node)


def test_fp32_logits_match_torch(built):
    onnx_backend = backend(built)
    for prompt in PROMPTS:
        tokens = built["tokenizer"].encode(prompt)
        want = torch_logits(built["model"], tokens)
        got = session_logits(onnx_backend, tokens)
        # every position, so RoPE and the causal mask are covered; measured max 1.3e-5 (std 2.8)
        assert np.abs(got - want).max() < 1e-4, (prompt, np.abs(got - want).max())


def test_greedy_continuation_matches_torch_generate(built):
    tokenizer, model = built["tokenizer"], built["model"]
    onnx_backend = backend(built)
    lengths = []
    for prompt in PROMPTS:
        ids = torch.tensor([tokenizer.encode(prompt)])
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False,
                                 eos_token_id=onnx_backend.eos_id, pad_token_id=tokenizer.pad_token_id)
        want = [t for t in out[0, ids.shape[1]:].tolist() if t != onnx_backend.eos_id]
        generation = onnx_backend.generate(prompt, max_tokens=20)
        assert generation.tokens == want, prompt
        assert generation.prompt_tokens == ids.shape[1]
        # Bytes that do not form a character (a random model writes them) are dropped, not shown as U+FFFD.
        assert generation.text == tokenizer.decode(want, skip_special_tokens=False).replace("\ufffd", "")
        lengths.append(len(want))
    assert max(lengths) == 20  # not a vacuous match on an immediate <|im_end|>


def test_decode_step_with_cache_equals_full_recompute(built):
    onnx_backend = backend(built)
    tokens = built["tokenizer"].encode(PROMPTS[0])
    length = len(tokens) - 1
    _, cache = onnx_backend.forward(tokens[:length], onnx_backend.cache.empty())
    assert [c.shape for c in cache] == [(1, KV_HEADS, length, HEAD_DIM)] * 2 * LAYERS
    step_logits, cache = onnx_backend.forward(tokens[length:], cache)
    assert [c.shape for c in cache] == [(1, KV_HEADS, length + 1, HEAD_DIM)] * 2 * LAYERS
    full = torch_logits(built["model"], tokens)[length]
    assert np.abs(step_logits - full).max() < 1e-4  # measured 6e-6
    assert np.abs(step_logits - session_logits(onnx_backend, tokens)[length]).max() < 1e-4


class RecordingSession:
    """Wraps an InferenceSession and records the shape of every input of every run."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: list[dict[str, tuple[int, ...]]] = []

    def run(self, output_names, feed):
        self.calls.append({name: value.shape for name, value in feed.items()})
        return self.inner.run(output_names, feed)


def test_decode_inputs_do_not_grow_with_the_prompt(built):
    onnx_backend = backend(built)
    prompt_lengths = []
    for prompt in ("Set a timer", " ".join(PROMPTS) * 3):
        onnx_backend.session = recorder = RecordingSession(onnx_backend.session)
        generation = onnx_backend.generate(prompt, max_tokens=6)
        prompt_length, generated = generation.prompt_tokens, len(generation.tokens)
        prefill, *decodes = recorder.calls
        assert generated >= 2
        prompt_lengths.append(prompt_length)
        # one prefill of the whole prompt on an empty cache, then one call per fed-back token
        assert prefill["input_ids"] == (1, prompt_length)
        assert prefill["past_key_values.0.key"] == (1, KV_HEADS, 0, HEAD_DIM)
        assert len(decodes) == (generated - 1 if generated == 6 else generated)
        for step, feed in enumerate(decodes):
            assert feed["input_ids"] == (1, 1)
            assert feed["attention_mask"] == (1, prompt_length + step + 1)
            assert feed["past_key_values.0.key"] == (1, KV_HEADS, prompt_length + step, HEAD_DIM)
        onnx_backend.session = recorder.inner
    assert prompt_lengths[1] > 10 * prompt_lengths[0]


def test_left_padded_batch_matches_single_rows(built):
    onnx_backend = backend(built)
    tokenizer = built["tokenizer"]
    rows = [tokenizer.encode(PROMPTS[1]), tokenizer.encode(PROMPTS[2])]
    width = max(map(len, rows))
    assert min(map(len, rows)) < width  # one row really is padded
    ids = np.array([[0] * (width - len(r)) + r for r in rows], dtype=np.int64)
    mask = np.array([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": mask, **dict(zip(onnx_backend.cache.past_names,
                                                                 onnx_backend.cache.empty(batch=2)))}
    logits = onnx_backend.session.run(["logits"], feed)[0]
    for row, tokens in enumerate(rows):
        want = torch_logits(built["model"], tokens)
        assert np.abs(logits[row, width - len(tokens):] - want).max() < 1e-4


def test_session_options(built):
    session = OnnxBackend(built["root"] / "model-fp32.onnx", built["dir"], n_threads=2).session
    options = session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_export_is_deterministic(built, tmp_path):
    info = export_onnx(built["dir"], tmp_path / "again.onnx")
    assert (tmp_path / "again.onnx").read_bytes() == (built["root"] / "model-fp32.onnx").read_bytes()
    assert info["sha256"] == built["export"]["sha256"]
    assert not [p.name for p in tmp_path.iterdir() if p.name != "again.onnx"]  # no temp file left


# --- quantized graphs ------------------------------------------------------------------------


def test_quantization_records_what_it_did(built):
    proto = onnx.load(str(built["root"] / "model-fp32.onnx"))
    targets = weight_matmuls(proto)
    assert len(targets) == 7 * LAYERS  # q k v o gate up down; the tied head's weight is a Transpose
    for kind, info in built["quants"].items():
        assert info["quant"] == kind and info["quantized_matmuls"] == targets
        assert "lm_head/MatMul" in info["kept_fp32"]["matmuls"]
    assert built["quants"]["int4"]["block_size"] == 32 and built["quants"]["int4"]["symmetric"]


def test_int4_file_holds_matmulnbits(built):
    proto = onnx.load(str(built["root"] / "model-int4.onnx"))
    nbits = [n for n in proto.graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 7 * LAYERS
    for node in nbits:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attributes["bits"] == 4 and attributes["block_size"] == 32
        assert len(node.input) == 3  # no zero points: symmetric


def dequantized_int4_model(path: Path, model):
    """A copy of `model` carrying the int4 file's weights, dequantized (symmetric: zero point 8)."""
    proto = onnx.load(str(path))
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    state = {}
    for node in (n for n in proto.graph.node if n.op_type == "MatMulNBits"):
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        packed, scales = stored[node.input[1]], stored[node.input[2]]
        n_out, blocks, _ = packed.shape
        codes = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n_out, blocks, -1)  # low nibble first
        weight = (codes.astype(np.float32) - 8) * scales.reshape(n_out, blocks, 1)
        weight = weight.reshape(n_out, -1)[:, :attributes["K"]]  # [out, in], as HF stores it
        state[node.input[1].removesuffix("_T_Q4")] = torch.tensor(weight)
    assert len(state) == 7 * LAYERS
    copy_ = copy.deepcopy(model)
    copy_.load_state_dict(state, strict=False)
    return copy_.eval()


def test_int4_computes_with_its_stored_weights(built):
    """int4 vs torch running the dequantized weights: checks the block layout and symmetric codes,
    apart from the loss that 4 bits bring to a random model (measured: max 1.2e-5)."""
    onnx_backend = backend(built, "int4")
    reference = dequantized_int4_model(built["root"] / "model-int4.onnx", built["model"])
    for prompt in PROMPTS:
        tokens = built["tokenizer"].encode(prompt)
        got = session_logits(onnx_backend, tokens)
        assert np.abs(got - torch_logits(reference, tokens)).max() < 1e-3
        # and the float model: same ballpark (4-bit RTN on random Gaussian weights is coarse)
        assert np.corrcoef(got.ravel(), torch_logits(built["model"], tokens).ravel())[0, 1] > 0.8


@pytest.mark.parametrize("kind, rms_tol", [("int8", 0.1), ("int4", 0.6)])
def test_quantized_files_load_and_generate(built, kind, rms_tol):
    onnx_backend = backend(built, kind)
    tokens = built["tokenizer"].encode(PROMPTS[0])
    # measured rms/std over the 3 prompts on this random model: int8 <= 0.078 (reduced range, an AVX2 CPU
    # without VNNI; full range saturated there: 0.22), int4 <= 0.39
    assert rms_error(session_logits(onnx_backend, tokens), torch_logits(built["model"], tokens)) < rms_tol
    generation = onnx_backend.generate(PROMPTS[1], max_tokens=5)  # prefill + decode steps through the cache
    assert len(generation.tokens) <= 5
    assert generation.text == built["tokenizer"].decode(generation.tokens).replace("\ufffd", "")


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["model.safetensors", "config.json"])
def test_incomplete_model_folder_names_the_missing_file(built, tmp_path, missing):
    folder = tmp_path / "incomplete"
    shutil.copytree(built["dir"], folder)
    (folder / missing).unlink()
    with pytest.raises(FnedgeError, match=missing.replace(".", r"\.")):
        export_onnx(folder, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_errors_name_the_problem(built, tmp_path):
    with pytest.raises(FnedgeError, match="int3"):
        quantize_onnx(built["root"] / "model-fp32.onnx", tmp_path / "q.onnx", "int3")
    with pytest.raises(FnedgeError, match="absent.onnx"):
        OnnxBackend(tmp_path / "absent.onnx", built["dir"], n_threads=1)
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(FnedgeError, match="junk.onnx: onnxruntime cannot load it"):
        OnnxBackend(tmp_path / "junk.onnx", built["dir"], n_threads=1)
    with pytest.raises(FnedgeError, match="does not fit"):
        tight = OnnxBackend(built["root"] / "model-fp32.onnx", built["dir"], n_threads=1, n_ctx=4)
        tight.generate(PROMPTS[0])
    with pytest.raises(FnedgeError, match="empty prompt"):
        backend(built).generate("")


def test_kept_prefix_gives_the_same_tokens_as_a_fresh_prefill(built):
    onnx_backend = backend(built)
    runs = {}
    for reuse in (True, False):
        onnx_backend.reuse_prefix = reuse
        runs[reuse] = [onnx_backend.generate(p, max_tokens=8).tokens for p in PROMPTS + PROMPTS[:1]]
    assert runs[True] == runs[False]
