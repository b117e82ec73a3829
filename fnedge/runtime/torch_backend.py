"""Greedy generation with the torch model, for development and `fnedge eval --model`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import LlamaForCausalLM
from transformers.utils import logging as transformers_logging

from fnedge.errors import FnedgeError
from fnedge.runtime.generation import Generation, timed_generation
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

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=False).rstrip("\ufffd")

    @torch.no_grad()
    def prompt_logits(self, prompt_tokens: list[int]):
        return self.model(input_ids=torch.tensor([prompt_tokens])).logits[0, -1].numpy()

    @torch.no_grad()
    def stream(self, prompt_tokens: list[int], max_tokens: int) -> Iterator[int]:
        """Prompt once, then one token a step through the KV cache, until <|im_end|>."""
        ids, past = torch.tensor([prompt_tokens]), None
        for _ in range(max_tokens):
            out = self.model(input_ids=ids, past_key_values=past, use_cache=True)
            past = out.past_key_values
            token = int(out.logits[0, -1].argmax())
            if token == self.tokenizer.eos_token_id:
                return
            yield token
            ids = torch.tensor([[token]])

    def generate(self, prompt: str, max_tokens: int = 256) -> Generation:
        return timed_generation(self, prompt, max_tokens)
