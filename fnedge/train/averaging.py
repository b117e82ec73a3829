"""An exponential moving average of the trained weights, saved instead of the last step's.

With batches of 2,048 tokens a tiny model's last weights carry the noise of its last few
hundred batches; their average does not. Ours rather than torch's `AveragedModel`, which copies
the whole module: for a LoRA run that is the frozen base too, and it would ride in every
checkpoint. This one keeps only the trained tensors, in float32.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


class WeightAverage:
    """avg <- avg + (1 - d) * (weights - avg) after each step, with d = min(decay, (1 + n) / (10 + n))
    at the n-th update, so the random initial weights are forgotten within the first few dozen
    steps rather than lingering for 1 / (1 - decay)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        trained = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self.names = [name for name, _ in trained]
        self.params = [p for _, p in trained]  # the model's own tensors: found once, not every step
        self.averages = [p.detach().float().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for average, param in zip(self.averages, self.params):
            average.lerp_(param.float(), 1 - decay)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        for average, param in zip(self.averages, self.params):
            param.copy_(average)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own again after it."""
        saved = [p.detach().clone() for p in self.params]
        self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                for value, param in zip(saved, self.params):
                    param.copy_(value)

    def state_dict(self) -> dict:
        # no decay: the run's config fixes it (a checkpoint's copy would override a changed config)
        return {"updates": self.updates, "names": self.names, "averages": self.averages}

    def load_state_dict(self, state: dict) -> None:
        if state["names"] != self.names:
            raise KeyError("averaged weights differ from the model's trained weights")
        self.updates = state["updates"]
        self.averages = [t.float().clone() for t in state["averages"]]
