import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

from fnedge.train.config import TrainConfig  # noqa: E402

# A run small enough for CI: fc-nano on a few hundred generated conversations.
TINY = dict(preset="fc-nano", n_samples=600, vocab_size=600, max_tokens=256, batch_tokens=2048,
            epochs=1.0, lr=3e-3, warmup_steps=5, eval_every=10, checkpoint_every=5, threads=1,
            dev_fraction=0.1)


def tiny_config(**overrides) -> TrainConfig:
    return TrainConfig.from_dict({**TINY, **overrides})


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A trained (barely) fc-nano model folder shared by the export and runtime tests."""
    from fnedge.train.trainer import train
    return train(tiny_config(), tmp_path_factory.mktemp("tiny-run"))


def make_model(directory: Path, tokenizer, config) :
    """A seeded random Llama whose logits are well spread (no near-ties for greedy decoding)."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 2:
                param.normal_(0.0, 0.25 if "embed" in name else 0.08)
            else:
                param.uniform_(0.8, 1.2)  # norms: not all ones, so a swapped norm would show
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return model


def interrupt_at_first_checkpoint(monkeypatch) -> None:
    """Make the next training run get Ctrl-C right after it writes its first checkpoint."""
    import os
    import signal

    from fnedge.train import trainer

    save_checkpoint = trainer._save_checkpoint

    def save_then_interrupt(*args, **kwargs):
        save_checkpoint(*args, **kwargs)
        monkeypatch.setattr(trainer, "_save_checkpoint", save_checkpoint)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(trainer, "_save_checkpoint", save_then_interrupt)


def assert_same_tensors(expected: Path, actual: Path) -> None:
    """Two safetensors files hold the same tensor names with exactly equal values."""
    import torch
    from safetensors.torch import load_file

    a, b = load_file(expected), load_file(actual)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


class TokenizerStepModel:
    """A stand-in for a backend (the decoding loop's StepModel) over a real tokenizer: it keeps
    the tokens of the reply so far, and a subclass says what the next logits are."""

    n_ctx = 4096

    def __init__(self, tokenizer) -> None:
        from fnedge.chat_format import IM_END

        self.tokenizer = tokenizer
        self.eos_id = tokenizer.convert_tokens_to_ids(IM_END)
        self.reply: list[int] = []

    def tokenize(self, text):
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, tokens):
        return self.tokenizer.decode(tokens, skip_special_tokens=False)

    def prefill(self, tokens):
        self.reply = []
        return self.next_logits()

    def extend(self, tokens):
        self.reply += list(tokens)
        return self.next_logits()

    def next_logits(self):
        raise NotImplementedError
