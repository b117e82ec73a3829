"""GGUF export: llama.cpp must tokenize and compute like the HF model it came from.

A tiny random fc-nano model (seeded) and a tokenizer trained on a small mixed Chinese/English
corpus are made once per module; llama.cpp (llama-cpp-python) loads the written GGUFs.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")

from fnedge.chat_format import CHAT_TEMPLATE, SPECIAL_TOKENS, render  # noqa: E402
from fnedge.errors import FnedgeError  # noqa: E402
from fnedge.export.gguf_writer import write_gguf  # noqa: E402
from fnedge.runtime.llama_backend import GGML_TYPE_F32, open_llama  # noqa: E402
from conftest import make_model  # noqa: E402

try:
    import llama_cpp
except ImportError as exc:  # pragma: no cover - depends on the environment
    llama_cpp = None
    LLAMA_CPP_MISSING = f"llama_cpp cannot be imported ({exc}); pip install llama-cpp-python"
else:
    LLAMA_CPP_MISSING = ""

needs_llama_cpp = pytest.mark.skipif(llama_cpp is None, reason=LLAMA_CPP_MISSING or "n/a")

# One llama.cpp thread: the model is tiny, and on a shared 2-core machine two threads spin in
# ggml's barriers while the other core is busy (measured 20x slower than one thread).
N_THREADS = 1
CITIES = ["上海", "北京", "深圳", "杭州", "Paris", "London", "New York", "Tokyo"]
ENGLISH = [
    "What is the weather in {city} tomorrow?",
    "Set a timer for {n} minutes, please.",
    "Remind me to call Alice at {n} o'clock.",
    "I'll send the report; don't forget the 3.14 version.",
    "Convert {n} dollars to euros.",
]
CHINESE = [
    "明天{city}会下雨吗？",
    "帮我设置一个{n}分钟的计时器。",
    "请把这段话翻译成英文：我们{n}点开会。",
    "今天{city}的气温是多少度？",
    "给妈妈发消息说我晚点回家，大概{n}点。",
]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]

TOKENIZE_CASES = [
    "Hello, world!",
    "明天上海会下雨吗？",
    "请把 report 发给 Alice，谢谢 3 次。",
    "  leading spaces and trailing   ",
    "line one\nline two\n\n\nthree\t\ttabs \n ",
    "digits 0 12 345 6789 1234567890 3.14159 -42",
    "emoji 😀👍🏽 ✨ and é ñ Ω ß",
    "don't I'll we've they're it's",
    "<|im_start|>user\n明天北京会下雨吗？<|im_end|>\n<|im_start|>assistant\n",
    '<tool_call>{"name": "get_weather", "arguments": {"city": "上海"}}</tool_call><|im_end|>',
    "<tool_response>{\"temp_c\": 21}</tool_response>",
    "text<|im_end|>more<|endoftext|>",
    "全角\u3000空格 and no\u00a0break, crlf\r\nline\r\n",
    "１２３ ①② 日本語のテキスト 한국어 텍스트 e\u0301",
    "🇨🇳 👨\u200d👩\u200d👧 a\x00b\x7f\u2028",
    "'S 'LL x''y $100 & 50% off!!!",
    " ",
    "",
    *SPECIAL_TOKENS,
]
FUZZ_PIECES = ["上海", "下雨", "吗", "？", "，", "the", "The", " weather", "'s", "'ll", "42", "7",
               "3.14", " ", "  ", "\n", "\n\n", "\t", "😀", "é", "Ω", "\u3000", "!", "?!",
               '{"', '": ', "}", *SPECIAL_TOKENS]

PROMPTS = [
    "<|im_start|>user\n明天上海会下雨吗？<|im_end|>\n<|im_start|>assistant\n",
    "Set a timer for 5 minutes",
    "请把这段话翻译成英文",
]


def corpus() -> list[str]:
    rng = random.Random(0)
    texts = []
    for _ in range(150):
        city, n = rng.choice(CITIES), rng.randint(1, 99)
        english = rng.choice(ENGLISH).format(city=city, n=n)
        chinese = rng.choice(CHINESE).format(city=city, n=n)
        messages = [{"role": "user", "content": rng.choice([english, chinese])},
                    {"role": "assistant", "tool_calls": [{"function": {
                        "name": "get_weather", "arguments": {"city": city}}}]},
                    {"role": "tool", "content": json.dumps({"temp_c": n})},
                    {"role": "assistant", "content": f"{city} {n}°C"}]
        texts += [english, chinese, render(messages, tools=TOOLS if rng.random() < 0.3 else None)]
    return texts


@pytest.fixture(scope="module", autouse=True)
def single_threaded_torch():
    """Torch's OpenMP workers spin between ops; interleaved with llama.cpp on a shared 2-core
    machine that turned 0.2 s tests into 18 s ones. The tiny model needs no threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from fnedge.train.presets import make_config
    from fnedge.train.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("gguf")
    tokenizer = train_tokenizer(corpus(), vocab_size=800)
    model_dir = root / "nano"
    model = make_model(model_dir, tokenizer, make_config("fc-nano", len(tokenizer),
                                                         context_length=256))
    reports = {q: write_gguf(model_dir, root / f"nano-{q}.gguf", q)
               for q in ("f32", "f16", "q8_0", "q4_0")}
    return {"root": root, "dir": model_dir, "tokenizer": tokenizer, "model": model,
            "reports": reports}


def load(path: Path):
    # F32 KV cache: llama.cpp's default F16 cache would blur the F32 comparison
    return open_llama(path, n_ctx=256, logits_all=True, n_threads=N_THREADS, n_threads_batch=N_THREADS,
                      n_batch=256, type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32)


def llama_logits(llm, tokens: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(tokens)
    return np.array(llm.scores[: len(tokens)], dtype=np.float32)


def torch_logits(model, tokens: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].float().numpy()


def rel_error(got: np.ndarray, want: np.ndarray) -> float:
    """Max absolute difference, relative to the spread (std) of the reference logits."""
    return float(np.abs(got - want).max() / want.std())


def rms_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.sqrt(np.mean((got - want) ** 2)) / want.std())


HF_NAMES = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj",
            "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
            "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
            "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def dequantized_model(path: Path, model):
    """A copy of `model` carrying the GGUF's weights, dequantized and un-permuted."""
    import copy

    config = model.config
    heads = {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads}
    state = {}
    for tensor in gguf.GGUFReader(path).tensors:
        shape = [int(n) for n in reversed(tensor.shape)]
        weight = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(shape)
        parts = tensor.name.split(".")
        if tensor.name == "token_embd.weight":
            key = "model.embed_tokens.weight"
        elif tensor.name == "output_norm.weight":
            key = "model.norm.weight"
        elif tensor.name == "output.weight":
            key = "lm_head.weight"
        else:
            key = f"model.layers.{parts[1]}.{HF_NAMES[parts[2]]}.weight"
            if parts[2] in heads:  # llama.cpp pair order -> HF rotate-half order
                rows, cols = weight.shape
                n = heads[parts[2]]
                weight = (weight.reshape(n, rows // n // 2, 2, cols).swapaxes(1, 2)
                          .reshape(rows, cols))
        state[key] = torch.tensor(np.array(weight, dtype=np.float32))
    copy_ = copy.deepcopy(model)
    copy_.load_state_dict(state, strict=False)
    if config.tie_word_embeddings:
        copy_.lm_head.weight = copy_.model.embed_tokens.weight
    return copy_.eval()


# --- writer, no llama.cpp needed -----------------------------------------------------------


def test_metadata_and_tensor_types(built):
    reader = gguf.GGUFReader(built["root"] / "nano-q4_0.gguf")
    fields = reader.fields

    def value(key):
        return fields[key].contents()

    tokenizer = built["tokenizer"]
    assert value("general.architecture") == "llama"
    assert value("llama.embedding_length") == 128
    assert value("llama.block_count") == 4
    from fnedge.train.presets import make_config
    nano = make_config("fc-nano")
    head_dim = nano.hidden_size // nano.num_attention_heads
    assert value("llama.attention.head_count") == nano.num_attention_heads
    assert value("llama.attention.head_count_kv") == nano.num_key_value_heads
    assert value("llama.rope.dimension_count") == head_dim
    assert value("llama.rope.freq_base") == pytest.approx(nano.rope_parameters["rope_theta"])
    assert value("llama.context_length") == 256
    assert value("llama.vocab_size") == len(tokenizer)
    assert value("general.file_type") == int(gguf.LlamaFileType.MOSTLY_Q4_0)
    assert value("tokenizer.ggml.model") == "gpt2"
    assert value("tokenizer.ggml.pre") == "gpt-2"
    assert value("tokenizer.chat_template") == CHAT_TEMPLATE
    assert value("tokenizer.ggml.eos_token_id") == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert value("tokenizer.ggml.eot_token_id") == value("tokenizer.ggml.eos_token_id")
    assert value("tokenizer.ggml.padding_token_id") == 0
    assert value("tokenizer.ggml.bos_token_id") == 0  # not llama.cpp's gpt2 default id 11
    assert value("tokenizer.ggml.add_bos_token") is False
    tokens = value("tokenizer.ggml.tokens")
    assert tokens == tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    types = value("tokenizer.ggml.token_type")
    assert types[:7] == [gguf.TokenType.CONTROL] * 7
    assert set(types[7:]) == {gguf.TokenType.NORMAL}
    merges = value("tokenizer.ggml.merges")
    assert merges and all(len(m.split(" ")) == 2 for m in merges)

    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert "output.weight" not in kinds  # tied embeddings
    assert kinds["token_embd.weight"] == "Q8_0"  # doubles as the output head
    assert kinds["blk.0.attn_q.weight"] == "Q4_0"
    assert kinds["blk.3.ffn_down.weight"] == "Q4_0"
    assert kinds["output_norm.weight"] == kinds["blk.2.ffn_norm.weight"] == "F32"
    assert kinds == built["reports"]["q4_0"]["tensors"]
    assert built["reports"]["q4_0"]["fallbacks"] == {}


def test_qk_rows_are_permuted_for_llama_cpp_rope(built):
    reader = gguf.GGUFReader(built["root"] / "nano-f32.gguf")
    stored = {t.name: np.array(t.data) for t in reader.tensors}
    hf_q = built["model"].model.layers[1].self_attn.q_proj.weight.detach().numpy()
    q = stored["blk.1.attn_q.weight"]
    from fnedge.train.presets import make_config
    nano = make_config("fc-nano")
    head_dim = nano.hidden_size // nano.num_attention_heads
    # adjacent rows (2j, 2j+1) of a head in GGUF are rows j and j + head_dim/2 in HF
    np.testing.assert_array_equal(q[0], hf_q[0])
    np.testing.assert_array_equal(q[1], hf_q[head_dim // 2])
    np.testing.assert_array_equal(q[head_dim + 3], hf_q[head_dim + 1 + head_dim // 2])
    v = stored["blk.1.attn_v.weight"]
    np.testing.assert_array_equal(v, built["model"].model.layers[1].self_attn.v_proj.weight
                                  .detach().numpy())


def test_writes_are_byte_identical_and_atomic(built, tmp_path):
    first, second = tmp_path / "a.gguf", tmp_path / "b" / "a.gguf"
    write_gguf(built["dir"], first, "q4_0")
    write_gguf(built["dir"], second, "q4_0")
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() == (built["root"] / "nano-q4_0.gguf").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gguf", "b"]  # no temp files left


def test_missing_files_are_user_errors(built, tmp_path):
    for missing in ("model.safetensors", "tokenizer.json", "config.json"):
        broken = tmp_path / f"no-{missing}"
        shutil.copytree(built["dir"], broken)
        (broken / missing).unlink()
        out = tmp_path / "out.gguf"
        with pytest.raises(FnedgeError, match=f"{broken}.*{missing}"):
            write_gguf(broken, out, "f16")
        assert not out.exists()
    with pytest.raises(FnedgeError, match="not found"):
        write_gguf(tmp_path / "nowhere", tmp_path / "out.gguf")
    with pytest.raises(FnedgeError, match="unknown GGUF quant"):
        write_gguf(built["dir"], tmp_path / "out.gguf", "q3_k")
    assert list(tmp_path.glob("*.gguf")) == []


def test_chat_template_from_tokenizer_config(built, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(built["dir"], model_dir)
    (model_dir / "chat_template.jinja").unlink()
    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = "{{ messages[0].content }}"
    config_path.write_text(json.dumps(config))
    # old tokenizers.json layout: merges as "a b" strings
    tok_path = model_dir / "tokenizer.json"
    tok = json.loads(tok_path.read_text())
    tok["model"]["merges"] = [" ".join(pair) for pair in tok["model"]["merges"]]
    tok_path.write_text(json.dumps(tok, ensure_ascii=False))
    write_gguf(model_dir, tmp_path / "m.gguf", "f16")
    write_gguf(built["dir"], tmp_path / "ref.gguf", "f16")
    fields = gguf.GGUFReader(tmp_path / "m.gguf").fields
    assert fields["tokenizer.chat_template"].contents() == "{{ messages[0].content }}"
    ref = gguf.GGUFReader(tmp_path / "ref.gguf").fields
    assert fields["tokenizer.ggml.merges"].contents() == ref["tokenizer.ggml.merges"].contents()


# --- llama.cpp parity ----------------------------------------------------------------------


@needs_llama_cpp
def test_llama_cpp_tokenizes_like_hf(built):
    tokenizer = built["tokenizer"]
    llm = load(built["root"] / "nano-f16.gguf")
    for text in TOKENIZE_CASES:
        want = tokenizer.encode(text, add_special_tokens=False)
        got = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        assert got == want, text
        assert llm.detokenize(got, special=True).decode("utf-8") == text
        assert tokenizer.decode(want) == text
    for special in SPECIAL_TOKENS:
        assert len(llm.tokenize(special.encode(), add_bos=False, special=True)) == 1
    assert llm.token_eos() == tokenizer.convert_tokens_to_ids("<|im_end|>")
    # no BOS is ever added
    assert llm.tokenize(b"hi", add_bos=True, special=True) == tokenizer.encode("hi")


@needs_llama_cpp
def test_llama_cpp_tokenizes_random_mixtures_like_hf(built):
    tokenizer = built["tokenizer"]
    llm = load(built["root"] / "nano-f16.gguf")
    rng = random.Random(1)
    for _ in range(300):
        text = "".join(rng.choice(FUZZ_PIECES) for _ in range(rng.randint(1, 12)))
        want = tokenizer.encode(text, add_special_tokens=False)
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) == want, text


@needs_llama_cpp
@pytest.mark.parametrize("quant, max_tol, rms_tol, top1", [
    ("f32", 1e-4, 1e-5, 1.0),  # measured 4e-6 / 1e-6
    ("f16", 2e-2, 5e-3, 1.0),  # measured 5e-3 / 1.3e-3
    ("q8_0", None, 0.1, 0.9),  # measured rms 3.5e-2, top-1 0.97
])
def test_llama_cpp_logits_match_torch(built, quant, max_tol, rms_tol, top1):
    tokenizer, model = built["tokenizer"], built["model"]
    llm = load(built["root"] / f"nano-{quant}.gguf")
    agree = []
    for prompt in PROMPTS:
        tokens = tokenizer.encode(prompt)
        want = torch_logits(model, tokens)
        got = llama_logits(llm, tokens)
        # every position, so RoPE (positions > 0) and the Q/K permutation are covered
        if max_tol is not None:
            assert rel_error(got, want) < max_tol, (prompt, rel_error(got, want))
        assert rms_error(got, want) < rms_tol, (prompt, rms_error(got, want))
        agree.append((got.argmax(-1) == want.argmax(-1)).mean())
    assert np.mean(agree) >= top1


@needs_llama_cpp
@pytest.mark.parametrize("quant", ["bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"])
def test_llama_cpp_matches_torch_on_the_stored_weights(built, quant, tmp_path):
    """Quantized files: llama.cpp vs torch running the dequantized GGUF weights.

    This separates the writer (layout, permutation, block order) from the loss that
    quantizing a random model brings; what remains is llama.cpp's 8-bit (bf16: bf16)
    activations. Measured: rms 2.3e-2..2.5e-2, max 0.10..0.12 (bf16: 6e-3, 3e-2).
    """
    tokenizer = built["tokenizer"]
    path = built["root"] / f"nano-{quant}.gguf"
    if not path.exists():
        write_gguf(built["dir"], path := tmp_path / f"nano-{quant}.gguf", quant)
    reference = dequantized_model(path, built["model"])
    llm = load(path)
    for prompt in PROMPTS:
        tokens = tokenizer.encode(prompt)
        got, want = llama_logits(llm, tokens), torch_logits(reference, tokens)
        assert rms_error(got, want) < 0.05, (prompt, rms_error(got, want))
        assert rel_error(got, want) < 0.25, (prompt, rel_error(got, want))
    # and against the original float model: same ballpark
    tokens = tokenizer.encode(PROMPTS[0])
    got, want = llama_logits(llm, tokens), torch_logits(built["model"], tokens)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.9


@needs_llama_cpp
@pytest.mark.parametrize("quant", ["f32", "f16"])
def test_llama_cpp_greedy_decoding_matches_torch(built, quant):
    tokenizer, model = built["tokenizer"], built["model"]
    llm = load(built["root"] / f"nano-{quant}.gguf")
    for prompt in PROMPTS:
        prompt_tokens = tokenizer.encode(prompt)
        torch_tokens, margins = list(prompt_tokens), []
        for _ in range(16):
            logits = torch_logits(model, torch_tokens)[-1]
            top2 = np.sort(logits)[-2:]
            margins.append((top2[1] - top2[0]) / logits.std())
            torch_tokens.append(int(logits.argmax()))
        llm.reset()
        llm.eval(prompt_tokens)
        llama_tokens = list(prompt_tokens)
        for _ in range(16):
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            llama_tokens.append(token)
            llm.eval([token])
        assert llama_tokens == torch_tokens, (prompt, min(margins))


@pytest.fixture(scope="module")
def odd(built, tmp_path_factory):
    """Rows that do not fit 32-wide blocks; head_dim != hidden / heads; untied output head."""
    from transformers import LlamaConfig

    root = tmp_path_factory.mktemp("odd")
    config = LlamaConfig(vocab_size=len(built["tokenizer"]), hidden_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=20,
                         intermediate_size=80, max_position_embeddings=256, rms_norm_eps=1e-5,
                         rope_theta=1e4, tie_word_embeddings=False, bos_token_id=None,
                         eos_token_id=2, pad_token_id=0)
    model = make_model(root / "odd", built["tokenizer"], config)
    reports = {q: write_gguf(root / "odd", root / f"odd-{q}.gguf", q) for q in ("f32", "q4_0")}
    return {"root": root, "model": model, "reports": reports}


def test_odd_shapes_fall_back_per_tensor(odd):
    report = odd["reports"]["q4_0"]
    types = report["tensors"]
    assert types["token_embd.weight"] == "Q4_0"  # untied: only an input table
    assert types["output.weight"] == "Q8_0"  # the output head gets more bits
    assert types["blk.0.attn_q.weight"] == "Q4_0"  # rows of 64
    assert types["blk.0.attn_output.weight"] == "F16"  # rows of 2 * 20 = 40
    assert types["blk.1.ffn_down.weight"] == "F16"  # rows of 80
    assert set(report["fallbacks"]) == {f"blk.{i}.{n}.weight" for i in range(2)
                                        for n in ("attn_output", "ffn_down")}
    reason = report["fallbacks"]["blk.0.ffn_down.weight"]
    assert reason == ("row length 80 is not a multiple of the Q4_0 block size 32; row length 80 "
                      "is not a multiple of the Q8_0 block size 32 -> F16")
    f32 = odd["reports"]["f32"]
    assert f32["fallbacks"] == {} and set(f32["tensors"].values()) == {"F32"}
    stored = {t.name: t.tensor_type.name
              for t in gguf.GGUFReader(odd["root"] / "odd-q4_0.gguf").tensors}
    assert stored == types
    fields = gguf.GGUFReader(odd["root"] / "odd-f32.gguf").fields
    assert fields["llama.attention.key_length"].contents() == 20
    assert fields["llama.rope.dimension_count"].contents() == 20


@needs_llama_cpp
def test_llama_cpp_runs_odd_shapes(built, odd):
    tokens = built["tokenizer"].encode(PROMPTS[0])
    want = torch_logits(odd["model"], tokens)
    assert rel_error(llama_logits(load(odd["root"] / "odd-f32.gguf"), tokens), want) < 1e-4
    got = llama_logits(load(odd["root"] / "odd-q4_0.gguf"), tokens)
    reference = torch_logits(dequantized_model(odd["root"] / "odd-q4_0.gguf", odd["model"]), tokens)
    assert rms_error(got, reference) < 0.05
