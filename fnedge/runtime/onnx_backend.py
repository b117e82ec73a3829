"""Greedy generation on an fnedge ONNX export with onnxruntime, numpy only.

The prompt runs through the graph once (prefill, past of length 0); then each step feeds the one
new token with the `present` tensors of the previous step as `past_key_values`, so a decode step
costs the same whatever the prompt length. Same interface as `LlamaBackend`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fnedge.errors import FnedgeError
from fnedge.runtime.generation import Generation, timed_generation
from fnedge.runtime.guide import CallGuide
from fnedge.runtime.vocab import RuntimeVocab

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


@dataclass(frozen=True)
class CacheLayout:
    """What the graph's cache looks like: input names (and the matching outputs), heads, head size, dtype."""
    past_names: list[str]
    present_names: list[str]
    kv_heads: int
    head_dim: int
    dtype: type

    @classmethod
    def from_session(cls, session) -> "CacheLayout":
        past = [i for i in session.get_inputs() if i.name.startswith("past_key_values.")]
        if not past:
            raise FnedgeError("the ONNX graph has no past_key_values inputs (not an fnedge KV-cache export)")
        _, kv_heads, _, head_dim = past[0].shape
        if past[0].type not in _NUMPY_TYPES:
            raise FnedgeError(f"unsupported KV cache type {past[0].type} in the ONNX graph")
        names = [i.name for i in past]
        presents = [name.replace("past_key_values.", "present.", 1) for name in names]
        missing = set(presents) - {o.name for o in session.get_outputs()}
        if missing:
            raise FnedgeError(f"the ONNX graph lacks the cache outputs {', '.join(sorted(missing))}")
        return cls(names, presents, int(kv_heads), int(head_dim), _NUMPY_TYPES[past[0].type])

    def empty(self, batch: int = 1) -> list[np.ndarray]:
        return [np.zeros((batch, self.kv_heads, 0, self.head_dim), dtype=self.dtype) for _ in self.past_names]


class OnnxBackend:
    def __init__(self, onnx_path: Path, tokenizer_dir: Path, n_threads: int, n_ctx: int = 1024) -> None:
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise FnedgeError(f"{onnx_path}: ONNX file not found")
        try:
            import onnxruntime as ort
        except ImportError:
            raise FnedgeError("onnxruntime is not installed: pip install onnxruntime") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = n_threads
        options.inter_op_num_threads = 1  # one sequential graph: a second pool only adds threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's load errors derive from Exception only
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise FnedgeError(f"{onnx_path}: onnxruntime cannot load it ({reason})") from None
        self.cache = CacheLayout.from_session(self.session)
        self.vocab = RuntimeVocab(tokenizer_dir)
        self.n_ctx = n_ctx
        self.eos_id = self.vocab.eos_id
        self._cache: list[np.ndarray] = self.cache.empty()
        self._cached_tokens: list[int] = []  # the tokens whose keys and values _cache holds
        self.reuse_prefix = True

    def token_bytes(self, token: int) -> bytes:
        return self.vocab.token_bytes(token)

    def tokenize(self, text: str) -> list[int]:
        return self.vocab.encode(text)

    def forward(self, tokens: list[int], past: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Run `tokens` after a cache of `past` positions: (last position's logits, new cache)."""
        past_length = past[0].shape[2]
        feed = {"input_ids": np.array([tokens], dtype=np.int64),
                "attention_mask": np.ones((1, past_length + len(tokens)), dtype=np.int64),
                **dict(zip(self.cache.past_names, past))}
        logits, *present = self.session.run(["logits", *self.cache.present_names], feed)
        return logits[0, -1], present

    def prefill(self, tokens: list[int]) -> np.ndarray:
        """Start a new sequence, keeping the cache of the prefix it shares with the previous one
        (as LlamaBackend does): only the rest of the prompt runs through the graph."""
        keep = 0
        if self.reuse_prefix:
            for a, b in zip(self._cached_tokens, tokens[:-1]):
                if a != b:
                    break
                keep += 1
        past = [array[:, :, :keep] for array in self._cache] if keep else self.cache.empty()
        logits, self._cache = self.forward(tokens[keep:], past)
        self._cached_tokens = list(tokens)
        return logits

    def extend(self, tokens: list[int]) -> np.ndarray:
        logits, self._cache = self.forward(tokens, self._cache)
        self._cached_tokens += tokens
        return logits

    def prompt_logits(self, prompt_tokens: list[int]) -> np.ndarray:
        return self.forward(prompt_tokens, self.cache.empty())[0]

    def decode(self, tokens: list[int]) -> str:
        return self.vocab.decode(tokens)

    def generate(self, prompt: str, max_tokens: int = 256, guide: CallGuide | None = None) -> Generation:
        return timed_generation(self, prompt, max_tokens, guide)
