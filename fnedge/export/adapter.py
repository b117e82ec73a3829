"""Merge a peft LoRA adapter into its base model, for `fnedge export --adapter DIR`.

    adapter_base_dir(adapter, model)   the base: --model if given, else the adapter's
                                       base_model_name_or_path when that is a local folder
    merge_adapter(adapter, base, out)  base + adapter -> a plain HF model folder at `out`;
                                       returns the adapter's record for the build manifest

The merge is peft's own (`PeftModel.from_pretrained(base, adapter).merge_and_unload()`), in
float32, and is checked before anything is written: a few chat prompts decode greedily to the
same tokens with the adapter applied on the side and merged into the weights. An adapter made for
another base fails with a FnedgeError naming both folders, whatever part of peft notices it
(missing target modules, tensor shapes, or adapter tensors that land on no module).

Nothing here downloads: a base that is not a local folder is an error asking for --model.
"""

from __future__ import annotations

import shutil
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

from fnedge.errors import FnedgeError
from fnedge.io import read_json, sha256_file

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# files the merged folder gets from save_pretrained; every other base file is copied as is
_WRITTEN_BY_SAVE = ("config.json", "generation_config.json")
# short chat prompts in the two languages the default catalog serves
CHECK_PROMPTS = ("明天上海会下雨吗？", "turn off the kitchen light", "hello there")
CHECK_NEW_TOKENS = 16


def read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    """The adapter folder's config, after checking the folder holds a LoRA adapter we can merge."""
    adapter_dir = Path(adapter_dir)
    if not adapter_dir.is_dir():
        raise FnedgeError(f"{adapter_dir}: adapter folder not found")
    config_path = adapter_dir / ADAPTER_CONFIG
    for path in (config_path, adapter_dir / ADAPTER_WEIGHTS):
        if not path.is_file():
            raise FnedgeError(f"{adapter_dir}: not a peft adapter folder (missing {path.name})")
    config = read_json(config_path)
    if not isinstance(config, dict):
        raise FnedgeError(f"{config_path}: expected a JSON object")
    if config.get("peft_type") != "LORA":
        raise FnedgeError(f"{config_path}: peft_type is {config.get('peft_type')!r}; only LORA adapters "
                          f"can be merged")
    return config


def adapter_base_dir(adapter_dir: Path, model_dir: Path | None) -> Path:
    """The base model folder: `model_dir` if given, else the adapter's recorded base if local."""
    config = read_adapter_config(adapter_dir)
    if model_dir is not None:
        return Path(model_dir)
    recorded = config.get("base_model_name_or_path")
    # peft resolves a relative base path against the working directory, and so do we
    if recorded and Path(recorded).is_dir():
        return Path(recorded)
    where = f"'{recorded}' is not a local folder" if recorded else "it records no base model"
    raise FnedgeError(f"{Path(adapter_dir) / ADAPTER_CONFIG}: {where}, and nothing is downloaded; "
                      f"pass the base model folder with --model")


def merge_adapter(adapter_dir: Path, base_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Merge the adapter into the base, check the merge, and save the result as a model folder."""
    adapter_dir, base_dir, out_dir = Path(adapter_dir), Path(base_dir), Path(out_dir)
    config = read_adapter_config(adapter_dir)
    try:
        import peft  # noqa: F401
    except ImportError:
        raise FnedgeError("peft is not installed (needed for --adapter): pip install peft") from None
    peft_model = _load_with_adapter(adapter_dir, base_dir)
    prompts = _check_prompts(base_dir)
    before = [_greedy(peft_model, p, CHECK_NEW_TOKENS) for p in prompts]
    merged = peft_model.merge_and_unload()
    after = [_greedy(merged, p, CHECK_NEW_TOKENS) for p in prompts]
    if before != after:
        diverged = next(i for i, (a, b) in enumerate(zip(before, after)) if a != b)
        raise FnedgeError(f"{adapter_dir}: merging into {base_dir} changed the greedy output of check prompt "
                          f"{diverged + 1} ({before[diverged]} -> {after[diverged]}); the merge is not exact")
    _save_merged(merged, base_dir, out_dir)
    return {
        "source": adapter_dir.name,
        "sha256": sha256_file(adapter_dir / ADAPTER_WEIGHTS),
        "peft_type": "LORA",
        "rank": config.get("r"),
        "alpha": config.get("lora_alpha"),
        "target_modules": _targets(config.get("target_modules")),
        "use_rslora": bool(config.get("use_rslora", False)),
        "use_dora": bool(config.get("use_dora", False)),
        "merged_by": {"package": "peft", "version": _version("peft"), "dtype": "float32"},
        "merge_check": {"prompts": len(prompts), "new_tokens": CHECK_NEW_TOKENS, "greedy_equal": True},
    }


def _load_with_adapter(adapter_dir: Path, base_dir: Path):
    """The base with the adapter attached (not merged); a mismatched adapter -> FnedgeError."""
    import torch
    from peft import PeftModel
    from transformers import LlamaForCausalLM
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    base = LlamaForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32).eval()
    mismatch = f"{adapter_dir}: this adapter was not made for the base model {base_dir}"
    with warnings.catch_warnings():
        # peft only warns about adapter tensors that land nowhere; _check_keys makes that an error
        warnings.simplefilter("ignore")
        try:
            model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
        except RuntimeError as exc:  # torch's load_state_dict: tensor shapes differ
            raise FnedgeError(f"{mismatch} ({_first_size_mismatch(str(exc))})") from None
        except (ValueError, IndexError, KeyError) as exc:
            # peft: a target module name is not in the base; trainable token rows past its vocab
            raise FnedgeError(f"{mismatch} ({_first_line(exc)})") from None
    _check_keys(model, adapter_dir, mismatch)
    return model.eval()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _first_size_mismatch(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if "size mismatch" in line]
    return lines[0] if lines else (message.splitlines() or ["shapes differ"])[0]


def _check_keys(model, adapter_dir: Path, mismatch: str) -> None:
    """Every tensor in the adapter file found its module, and every adapted module got its tensors.
    (peft loads non-strictly: an adapter for a deeper model would otherwise merge in part.)"""
    from peft import get_peft_model_state_dict
    from safetensors import safe_open

    with safe_open(str(adapter_dir / ADAPTER_WEIGHTS), framework="pt") as weights:
        stored = set(weights.keys())
    expected = set(get_peft_model_state_dict(model, save_embedding_layers=False))
    unused, missing = sorted(stored - expected), sorted(expected - stored)
    if unused:
        raise FnedgeError(f"{mismatch} ({len(unused)} adapter tensors match no module of the base, "
                          f"e.g. {unused[0]})")
    if missing:
        raise FnedgeError(f"{mismatch} ({len(missing)} adapted modules of the base have no tensors in "
                          f"{ADAPTER_WEIGHTS}, e.g. {missing[0]})")


def _check_prompts(base_dir: Path) -> list[list[int]]:
    from fnedge.chat_format import render
    from fnedge.train.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(base_dir)
    return [tokenizer.encode(render([{"role": "user", "content": text}], add_generation_prompt=True),
                             add_special_tokens=False) for text in CHECK_PROMPTS]


def _greedy(model, prompt: list[int], new_tokens: int) -> list[int]:
    """Greedy continuation without a cache: a few short prompts, so plain recomputation is cheap."""
    import torch

    tokens = list(prompt)
    with torch.no_grad():
        for _ in range(new_tokens):
            logits = model(input_ids=torch.tensor([tokens])).logits[0, -1]
            tokens.append(int(logits.argmax()))
    return tokens[len(prompt):]


def _save_merged(model, base_dir: Path, out_dir: Path) -> None:
    """A plain HF folder: the merged weights (float32) and every other file of the base."""
    model.save_pretrained(str(out_dir), safe_serialization=True)
    for path in sorted(base_dir.iterdir()):
        if path.is_file() and path.name not in _WRITTEN_BY_SAVE and ".safetensors" not in path.name:
            shutil.copyfile(path, out_dir / path.name)


def _targets(value: Any) -> list[str] | str | None:
    # peft stores a list (as a set, so in no fixed order) or a single regex string
    return sorted(value) if isinstance(value, (list, tuple, set)) else value


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
