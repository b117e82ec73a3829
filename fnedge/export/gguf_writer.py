"""Write a trained fnedge model folder as a llama.cpp GGUF file.

`write_gguf(model_dir, out_path, quant)` reads a Hugging Face folder (config.json,
model.safetensors, tokenizer.json, tokenizer_config.json, chat_template.jinja if the template is
not in tokenizer_config.json) and writes one GGUF for llama.cpp's `llama` architecture:

* Tensors get llama.cpp names. HF stores Q/K projections for "rotate half" RoPE; llama.cpp's
  `llama` graph rotates adjacent pairs, so the rows of each Q and K head are permuted
  (the standard conversion, see `_permute_qk`).
* Tied embeddings: no `output.weight`; llama.cpp then uses `token_embd.weight` as the output head.
* Quantization with gguf-py's numpy quantizers. 1-D tensors (norms) always stay F32. A tensor
  whose rows do not split into whole blocks falls back to the next larger type
  (q4_* / q5_* -> q8_0 -> f16); every choice is reported.
* The output head gets at least Q8_0 in the 4/5-bit types, as llama.cpp's own `llama-quantize`
  does (it gives the output tensor -- and, when there is none, the tied `token_embd` -- Q6_K, or
  Q8_0 when rows do not fit Q6_K blocks; gguf-py cannot write Q6_K, so Q8_0 is used).
  With tied embeddings that head *is* token_embd, so token_embd gets Q8_0 there.
* Tokenizer: byte-level BPE as `tokenizer.ggml.model = gpt2`, `tokenizer.ggml.pre = gpt-2` (the
  same GPT-2 split regex as HF's ByteLevel pre-tokenizer), tokens in id order, CONTROL type for
  special tokens, merges, eos (= eot) and pad ids, `add_bos_token = false`, and the chat template.

The output is deterministic (no timestamps; fixed key and tensor order) and written atomically
(temporary file in the target folder, then `os.replace`).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from fnedge.errors import FnedgeError
from fnedge.io import read_json

ARCH = "llama"

# quant name -> (tensor type for 2-D weights, general.file_type)
_QUANTS: dict[str, tuple[str, str]] = {
    "f32": ("F32", "ALL_F32"),
    "f16": ("F16", "MOSTLY_F16"),
    "bf16": ("BF16", "MOSTLY_BF16"),
    "q8_0": ("Q8_0", "MOSTLY_Q8_0"),
    "q5_1": ("Q5_1", "MOSTLY_Q5_1"),
    "q5_0": ("Q5_0", "MOSTLY_Q5_0"),
    "q4_1": ("Q4_1", "MOSTLY_Q4_1"),
    "q4_0": ("Q4_0", "MOSTLY_Q4_0"),
}
QUANT_TYPES = tuple(_QUANTS)
_LOW_BIT = ("Q4_0", "Q4_1", "Q5_0", "Q5_1")
_F16_MAX = 65504.0

_LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def write_gguf(model_dir: Path, out_path: Path, quant: str = "f16", *,
               name: str | None = None) -> dict[str, Any]:
    """Convert the HF model folder `model_dir` to a GGUF at `out_path`.

    Returns {"quant", "path", "file_type", "tensors": {gguf name: type},
    "fallbacks": {gguf name: reason}, "vocab_size", "chat_template": bool}.
    """
    import gguf

    model_dir, out_path = Path(model_dir), Path(out_path)
    quant = quant.lower()
    if quant not in _QUANTS:
        raise FnedgeError(f"unknown GGUF quant type '{quant}' (choose from {', '.join(_QUANTS)})")
    if not model_dir.is_dir():
        raise FnedgeError(f"{model_dir}: model folder not found")
    for required in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        if not (model_dir / required).is_file():
            raise FnedgeError(f"{model_dir}: missing {required} (not a complete model folder)")

    config = read_json(model_dir / "config.json")
    hp = _hparams(config, model_dir)
    weights = _load_weights(model_dir)
    vocab = _vocab(model_dir, hp["vocab_size"])
    chat_template = _chat_template(model_dir, vocab["tokenizer_config"])

    base_type, file_type = _QUANTS[quant]
    writer = gguf.GGUFWriter(path=None, arch=ARCH)

    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name or model_dir.resolve().name)
    writer.add_file_type(int(gguf.LlamaFileType[file_type]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    writer.add_vocab_size(hp["vocab_size"])
    writer.add_context_length(hp["context_length"])
    writer.add_embedding_length(hp["hidden"])
    writer.add_block_count(hp["layers"])
    writer.add_feed_forward_length(hp["ffn"])
    writer.add_head_count(hp["heads"])
    writer.add_head_count_kv(hp["kv_heads"])
    writer.add_key_length(hp["head_dim"])
    writer.add_value_length(hp["head_dim"])
    writer.add_rope_dimension_count(hp["head_dim"])
    writer.add_rope_freq_base(hp["rope_theta"])
    writer.add_layer_norm_rms_eps(hp["rms_eps"])

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(vocab["tokens"])
    writer.add_token_types(vocab["types"])
    writer.add_token_merges(vocab["merges"])
    writer.add_eos_token_id(vocab["eos_id"])
    # the end of an assistant turn; llama.cpp would otherwise guess EOT from token texts
    # (<|im_end|> and <|endoftext|> both qualify, and its choice follows hash-map order)
    writer.add_eot_token_id(vocab["eos_id"])
    if vocab["pad_id"] is not None:
        writer.add_pad_token_id(vocab["pad_id"])
    if vocab["bos_id"] is not None:
        writer.add_bos_token_id(vocab["bos_id"])
    writer.add_add_bos_token(vocab["add_bos"])
    writer.add_add_eos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    types: dict[str, str] = {}
    fallbacks: dict[str, str] = {}
    for gguf_name, array, is_output_head in _gguf_tensors(weights, hp):
        qtype, reason = _choose_type(array, base_type, is_output_head)
        if reason:
            fallbacks[gguf_name] = reason
        types[gguf_name] = qtype
        ggml_type = gguf.GGMLQuantizationType[qtype]
        data = gguf.quants.quantize(array, ggml_type)
        if qtype in ("F32", "F16"):
            writer.add_tensor(gguf_name, data)
        else:
            writer.add_tensor(gguf_name, data, raw_shape=data.shape, raw_dtype=ggml_type)

    _write_atomically(writer, out_path)
    return {
        "quant": quant,
        "path": str(out_path),
        "file_type": file_type,
        "tensors": types,
        "fallbacks": fallbacks,
        "vocab_size": hp["vocab_size"],
        "chat_template": chat_template is not None,
    }


# --- model ---------------------------------------------------------------------------------


def _hparams(config: dict[str, Any], model_dir: Path) -> dict[str, Any]:
    where = model_dir / "config.json"
    if config.get("model_type") != "llama":
        raise FnedgeError(f"{where}: model_type is {config.get('model_type')!r}, "
                          "the GGUF writer handles only 'llama'")
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise FnedgeError(f"{where}: attention/MLP biases are not supported by the GGUF writer")
    if config.get("hidden_act", "silu") != "silu":
        raise FnedgeError(f"{where}: hidden_act {config['hidden_act']!r} is not supported "
                          "(silu only)")
    # transformers 5 keeps RoPE settings in `rope_parameters`; 4.x in rope_theta/rope_scaling
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in (None, "default"):
        raise FnedgeError(f"{where}: RoPE scaling '{rope_type}' is not supported by the "
                          "GGUF writer")
    try:
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        hp = {
            "vocab_size": int(config["vocab_size"]),
            "context_length": int(config["max_position_embeddings"]),
            "hidden": hidden,
            "layers": int(config["num_hidden_layers"]),
            "ffn": int(config["intermediate_size"]),
            "heads": heads,
            "kv_heads": int(config.get("num_key_value_heads") or heads),
            "head_dim": int(config.get("head_dim") or hidden // heads),
            "rope_theta": float(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
            "rms_eps": float(config.get("rms_norm_eps", 1e-6)),
            "tied": bool(config.get("tie_word_embeddings", False)),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise FnedgeError(f"{where}: missing or bad field {exc}") from None
    if hp["head_dim"] % 2:
        raise FnedgeError(f"{where}: head_dim {hp['head_dim']} must be even for RoPE")
    return hp


def _load_weights(model_dir: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    single = model_dir / "model.safetensors"
    index = model_dir / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        shards = sorted(set(read_json(index).get("weight_map", {}).values()))
        files = [model_dir / shard for shard in shards]
        for shard in files:
            if not shard.is_file():
                raise FnedgeError(f"{model_dir}: missing {shard.name} (listed in {index.name})")
    else:
        raise FnedgeError(f"{model_dir}: missing model.safetensors (not a complete model folder)")
    weights: dict[str, np.ndarray] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():
                    weights[key] = handle.get_tensor(key).float().numpy()
        except Exception as exc:  # safetensors raises its own error types
            raise FnedgeError(f"{path}: cannot read weights ({exc})") from None
    return weights


def _permute_qk(weight: np.ndarray, n_head: int) -> np.ndarray:
    """HF rotate-half row order -> llama.cpp adjacent-pair order, within each head.

    HF rotates row i with row i + d/2 of a head; ggml's normal RoPE rotates rows 2j and 2j+1.
    Row (half h, index j) therefore moves to position 2j + h.
    """
    rows, cols = weight.shape
    return (weight.reshape(n_head, 2, rows // n_head // 2, cols)
            .swapaxes(1, 2)
            .reshape(rows, cols))


def _gguf_tensors(weights: dict[str, np.ndarray], hp: dict[str, Any]):
    """Yield (gguf name, float32 array, is_output_head) in a fixed order; check nothing is left."""
    remaining = dict(weights)

    def take(hf_name: str, shape: tuple[int, ...]) -> np.ndarray:
        if hf_name not in remaining:
            raise FnedgeError(f"model weights: tensor {hf_name} is missing")
        array = np.ascontiguousarray(remaining.pop(hf_name), dtype=np.float32)
        if array.shape != shape:
            raise FnedgeError(f"model weights: {hf_name} has shape {tuple(array.shape)}, "
                              f"config implies {shape}")
        return array

    hidden, head_dim, ffn = hp["hidden"], hp["head_dim"], hp["ffn"]
    q_rows, kv_rows = hp["heads"] * head_dim, hp["kv_heads"] * head_dim
    shapes = {
        "input_layernorm.weight": (hidden,),
        "self_attn.q_proj.weight": (q_rows, hidden),
        "self_attn.k_proj.weight": (kv_rows, hidden),
        "self_attn.v_proj.weight": (kv_rows, hidden),
        "self_attn.o_proj.weight": (hidden, q_rows),
        "post_attention_layernorm.weight": (hidden,),
        "mlp.gate_proj.weight": (ffn, hidden),
        "mlp.up_proj.weight": (ffn, hidden),
        "mlp.down_proj.weight": (hidden, ffn),
    }
    embeddings = take("model.embed_tokens.weight", (hp["vocab_size"], hidden))
    yield "token_embd.weight", embeddings, hp["tied"]  # tied: it is the output head too
    for layer in range(hp["layers"]):
        for hf_suffix, gguf_suffix in _LAYER_TENSORS.items():
            array = take(f"model.layers.{layer}.{hf_suffix}", shapes[hf_suffix])
            if hf_suffix == "self_attn.q_proj.weight":
                array = _permute_qk(array, hp["heads"])
            elif hf_suffix == "self_attn.k_proj.weight":
                array = _permute_qk(array, hp["kv_heads"])
            yield f"blk.{layer}.{gguf_suffix}", array, False
    yield "output_norm.weight", take("model.norm.weight", (hidden,)), False
    if hp["tied"]:
        remaining.pop("lm_head.weight", None)  # a copy of the embeddings if saved at all
    else:
        yield "output.weight", take("lm_head.weight", (hp["vocab_size"], hidden)), True
    leftover = sorted(k for k in remaining if not k.endswith("rotary_emb.inv_freq"))
    if leftover:
        raise FnedgeError(f"model weights: unexpected tensors {', '.join(leftover[:5])}"
                          + (" ..." if len(leftover) > 5 else ""))


def _choose_type(array: np.ndarray, base: str, is_output_head: bool) -> tuple[str, str | None]:
    """The stored type of one tensor and, when it differs from the requested one, why."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    if array.ndim == 1:
        return "F32", None  # norms: tiny, and llama.cpp expects F32 (not a fallback)
    requested = base
    if base in _LOW_BIT and is_output_head:
        requested = "Q8_0"  # llama.cpp gives the output head more bits (see module docstring)
    chain = [requested]
    if requested not in ("F32", "F16", "BF16"):
        chain += [t for t in ("Q8_0", "F16") if t != requested]
    row = array.shape[-1]
    reasons = []
    for qtype in chain:
        block = GGML_QUANT_SIZES[GGMLQuantizationType[qtype]][0]
        if row % block:
            reasons.append(f"row length {row} is not a multiple of the {qtype} block size {block}")
            continue
        if qtype == "F16" and float(np.abs(array).max(initial=0.0)) > _F16_MAX:
            reasons.append("values exceed the F16 range")
            qtype = "F32"
        return qtype, ("; ".join(reasons) + f" -> {qtype}") if reasons else None
    return "F32", "; ".join(reasons) + " -> F32"  # unreachable: F16 has block size 1


# --- tokenizer -----------------------------------------------------------------------------


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value


def _vocab(model_dir: Path, vocab_size: int) -> dict[str, Any]:
    from gguf import TokenType

    tok_path = model_dir / "tokenizer.json"
    tokenizer = read_json(tok_path)
    tok_config = read_json(model_dir / "tokenizer_config.json")
    model = tokenizer.get("model") or {}
    pre = tokenizer.get("pre_tokenizer") or {}
    if model.get("type") != "BPE":
        raise FnedgeError(f"{tok_path}: model type {model.get('type')!r}; only byte-level BPE "
                          "tokenizers can be exported")
    if (pre.get("type") != "ByteLevel" or not pre.get("use_regex", True)
            or pre.get("add_prefix_space") or tokenizer.get("normalizer") is not None
            or model.get("ignore_merges") or model.get("dropout")):
        # llama.cpp's gpt2/gpt-2 tokenizer would split or merge differently
        raise FnedgeError(f"{tok_path}: not a plain GPT-2 byte-level BPE tokenizer "
                          "(ByteLevel regex pre-tokenizer, no normalizer, no prefix space)")

    id_to_token: dict[int, str] = {}
    for token, index in model.get("vocab", {}).items():
        id_to_token[int(index)] = token
    control: set[int] = set()
    user_defined: set[int] = set()
    for added in tokenizer.get("added_tokens", []):
        index = int(added["id"])
        if index in id_to_token and id_to_token[index] != added["content"]:
            raise FnedgeError(f"{tok_path}: id {index} is both {id_to_token[index]!r} "
                              f"and added token {added['content']!r}")
        id_to_token[index] = added["content"]
        (control if added.get("special") else user_defined).add(index)
    if id_to_token and max(id_to_token) >= vocab_size:
        raise FnedgeError(f"{model_dir}: tokenizer has id {max(id_to_token)} but the model's "
                          f"vocab_size is {vocab_size}")

    tokens: list[str] = []
    types: list[int] = []
    for index in range(vocab_size):
        if index not in id_to_token:  # embedding rows the tokenizer never produces
            tokens.append(f"[PAD{index}]")
            types.append(TokenType.UNUSED)
        else:
            tokens.append(id_to_token[index])
            types.append(TokenType.CONTROL if index in control
                         else TokenType.USER_DEFINED if index in user_defined
                         else TokenType.NORMAL)
    token_to_id = {token: index for index, token in enumerate(tokens)}

    merges: list[str] = []
    for merge in model.get("merges", []):
        pair = merge.split(" ", 1) if isinstance(merge, str) else list(merge)
        if len(pair) != 2 or any(" " in part or not part for part in pair):
            raise FnedgeError(f"{tok_path}: merge {merge!r} cannot be stored for llama.cpp")
        merges.append(f"{pair[0]} {pair[1]}")

    def special_id(key: str) -> int | None:
        text = _token_text(tok_config.get(key))
        if text is None:
            return None
        if text not in token_to_id:
            raise FnedgeError(f"{model_dir / 'tokenizer_config.json'}: {key} {text!r} "
                              "is not in the vocabulary")
        return token_to_id[text]

    eos_id = special_id("eos_token")
    if eos_id is None:
        raise FnedgeError(f"{model_dir / 'tokenizer_config.json'}: no eos_token")
    pad_id = special_id("pad_token")
    bos_id = special_id("bos_token")
    add_bos = bool(tok_config.get("add_bos_token", False))
    if add_bos and bos_id is None:
        raise FnedgeError(f"{model_dir / 'tokenizer_config.json'}: add_bos_token without bos_token")
    if bos_id is None:
        # llama.cpp's gpt2 vocab defaults BOS to id 11, an ordinary token here. Point it at the
        # padding token (Qwen's convention) so nothing ordinary is ever treated as BOS;
        # add_bos_token = false keeps it from being inserted.
        bos_id = pad_id
    return {"tokens": tokens, "types": types, "merges": merges, "eos_id": eos_id,
            "pad_id": pad_id, "bos_id": bos_id, "add_bos": add_bos,
            "tokenizer_config": tok_config}


def _chat_template(model_dir: Path, tok_config: dict[str, Any]) -> Any:
    """tokenizer_config.json's chat_template, else chat_template.jinja (transformers 5 layout)."""
    template = tok_config.get("chat_template")
    if template:
        return template
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    return None


# --- output --------------------------------------------------------------------------------


def _write_atomically(writer: Any, out_path: Path) -> None:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.parent / f".{out_path.name}.{secrets.token_hex(4)}.tmp"
    # create it ourselves so the final file gets normal (umask) permissions
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
