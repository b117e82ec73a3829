"""The export's parity step: every artifact against the torch model it came from.

On a few fixed prompts (Chinese, English, mixed, a turn after a tool result) it records the
largest first-token logit difference, how often the top token agrees, and whether 16 greedy
tokens are identical. A float artifact (f32/f16 GGUF, fp32 ONNX) far off the torch model is a
broken export and stops it; quantized artifacts are expected to differ and are only recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fnedge.chat_format import render
from fnedge.errors import FnedgeError

PARITY_MESSAGES = [
    [{"role": "user", "content": "明天上海会下雨吗？"}],
    [{"role": "user", "content": "Turn off the bedroom light please"}],
    [{"role": "user", "content": "帮我 set 一个 7:30 的闹钟"}],
    [{"role": "user", "content": "Find a hotel in Sofia"},
     {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function", "function": {
         "name": "search_hotels", "arguments": '{"city": "Sofia"}'}}]},
     {"role": "tool", "tool_call_id": "call_1", "content": '[{"id": "kgr-4922", "name": "Station Hotel"}]'}],
]
GREEDY_TOKENS = 16
FLOAT_QUANTS = ("f32", "f16", "onnx-fp32", "onnx-fp32-ort")
FLOAT_TOLERANCE = 0.05  # max |logit difference| a float artifact may show (measured: f16 2.5e-3)


def check_parity(model_dir: Path, build_dir: Path, artifacts: list[dict[str, Any]], context_length: int) -> None:
    """Add a `parity` record to each artifact (in place); raise if a float artifact is broken."""
    from fnedge.runtime.torch_backend import TorchBackend

    reference = TorchBackend(model_dir, n_threads=None)
    prompts = [reference.tokenize(render(m, None, add_generation_prompt=True)) for m in PARITY_MESSAGES]
    want = [(reference.prompt_logits(p), _greedy(reference, p)) for p in prompts]
    for artifact in artifacts:
        backend = _backend(build_dir, artifact, context_length)
        errors, same_top, same_greedy = [], 0, 0
        for tokens, (logits, greedy) in zip(prompts, want):
            got = backend.prompt_logits(tokens)
            errors.append(float(np.max(np.abs(got - logits))))
            same_top += int(np.argmax(got) == np.argmax(logits))
            same_greedy += int(_greedy(backend, tokens) == greedy)
        artifact["parity"] = {"prompts": len(prompts), "max_abs_logit_error": round(max(errors), 6),
                              "same_top_token": same_top, "same_greedy_tokens": same_greedy}
        if artifact["quant"] in FLOAT_QUANTS and max(errors) > FLOAT_TOLERANCE:
            raise FnedgeError(f"{artifact['file']}: first-token logits differ from the torch model by "
                              f"{max(errors):.3g} (a float export should be within {FLOAT_TOLERANCE}): broken export")


def _greedy(backend, tokens: list[int]) -> list[int]:
    from fnedge.runtime.generation import stream_tokens

    return list(stream_tokens(backend, tokens, GREEDY_TOKENS))


def _backend(build_dir: Path, artifact: dict[str, Any], context_length: int):
    if artifact["format"] == "onnx":
        from fnedge.runtime.onnx_backend import OnnxBackend

        return OnnxBackend(build_dir / artifact["file"], build_dir, n_threads=1, n_ctx=context_length)
    from fnedge.runtime.llama_backend import LlamaBackend

    return LlamaBackend(build_dir / artifact["file"], n_threads=1, n_ctx=context_length)
