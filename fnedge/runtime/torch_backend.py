"""Greedy generation with the torch model, for development and `fnedge eval --model`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import LlamaForCausalLM
from transformers.utils import logging as transformers_logging

from fnedge.errors import FnedgeError
from fnedge.runtime.generation import Generation, timed_generation
from fnedge.runtime.guide import CallGuide
from fnedge.runtime.vocab import RuntimeVocab
from fnedge.train.tokenizer import load_tokenizer


class TorchBackend:
    def __init__(self, model_dir: Path, n_threads: int | None = None) -> None:
        model_dir = Path(model_dir)
        for needed in ("config.json", "model.safetensors", "tokenizer.json"):
            if not (model_dir / needed).is_file():
                raise FnedgeError(f"{model_dir}: not a model folder (missing {needed})")
        if n_threads:
            torch.set_num_threads(n_threads)
        transformers_logging.disable_progress_bar()  # stdout/stderr stay ours
        self.tokenizer = load_tokenizer(model_dir)
        self.model = LlamaForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        self.eos_id = self.tokenizer.eos_token_id
        self._token_bytes = RuntimeVocab(model_dir).token_bytes
        self.n_ctx = self.model.config.max_position_embeddings
        self._past = None

    def token_bytes(self, token: int) -> bytes:
        return self._token_bytes(token)

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=False).rstrip("\ufffd")

    @torch.no_grad()
    def prompt_logits(self, prompt_tokens: list[int]):
        return self.model(input_ids=torch.tensor([prompt_tokens])).logits[0, -1].numpy()

    @torch.no_grad()
    def prefill(self, tokens: list[int]) -> np.ndarray:
        self._past = None
        return self.extend(tokens)

    @torch.no_grad()
    def extend(self, tokens: list[int]) -> np.ndarray:
        out = self.model(input_ids=torch.tensor([tokens]), past_key_values=self._past, use_cache=True)
        self._past = out.past_key_values
        return out.logits[0, -1].numpy()

    def generate(self, prompt: str, max_tokens: int = 256, guide: CallGuide | None = None) -> Generation:
        return timed_generation(self, prompt, max_tokens, guide)
