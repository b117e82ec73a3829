"""One run's training settings, saved as `config.yaml` next to its checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fnedge.errors import FnedgeError


LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraSettings:
    """The `lora:` mapping of a training config: adapt a pretrained base instead of training from scratch."""
    rank: int = 16
    alpha: float = 32.0                # updates are scaled by alpha / rank
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(LLAMA_PROJECTIONS))

    @classmethod
    def from_dict(cls, raw: Any, source: str) -> "LoraSettings":
        if raw is True:  # `lora: true`: every default
            raw = {}
        if not isinstance(raw, dict):
            raise FnedgeError(f"{source}: 'lora' must be a mapping of LoRA settings (or true)")
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise FnedgeError(f"{source}: unknown LoRA setting(s) {sorted(unknown)}")
        settings = cls(**raw)
        if not isinstance(settings.rank, int) or isinstance(settings.rank, bool) or settings.rank <= 0:
            raise FnedgeError(f"{source}: 'lora.rank' must be a positive integer")
        if not (isinstance(settings.alpha, (int, float)) and settings.alpha > 0):
            raise FnedgeError(f"{source}: 'lora.alpha' must be a positive number")
        if not (isinstance(settings.dropout, (int, float)) and 0 <= settings.dropout < 1):
            raise FnedgeError(f"{source}: 'lora.dropout' must be a number from 0 up to (not including) 1")
        modules = settings.target_modules
        if not (isinstance(modules, list) and modules and all(isinstance(m, str) and m for m in modules)):
            raise FnedgeError(f"{source}: 'lora.target_modules' must be a non-empty list of module names")
        return settings


@dataclass
class TrainConfig:
    preset: str = "fc-micro"
    catalog: str | None = None         # None: the built-in default catalog
    hints: str | None = None           # per-tool phrasing/value hints for the data generator
    data: str | None = None            # an existing conversations JSONL; None: generate one
    n_samples: int = 46000             # conversations generated when `data` is None
    data_seed: int = 0
    dev_fraction: float = 0.03         # held out by phrasing template and value
    vocab_size: int = 6400
    max_tokens: int = 384              # longer conversations are dropped (and counted)
    batch_tokens: int = 2048           # padded tokens per optimizer step (small: tiny models need many steps)
    epochs: float = 1.0
    lr: float = 2e-3
    context_loss_weight: float = 0.3   # weight of the next-token loss on non-reply tokens (user turns, tool results)
    min_lr_ratio: float = 0.1
    warmup_steps: int = 150
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 500
    checkpoint_every: int = 100
    seed: int = 0
    threads: int = 0                   # 0: torch's default
    save_dtype: str = "float16"        # the finished model's weights (halves the file; exports read it)
    precision: str = "auto"            # bf16 autocast where the CPU has bf16 units (~1.8x here), else fp32
    # LoRA runs (fnedge/train/lora.py) adapt `base` instead of training `preset`; vocab_size is unused.
    lora: LoraSettings | None = None
    base: str | None = None            # HF model folder or .gguf file; None: the built-in default model

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise FnedgeError(f"{path}: cannot read training config ({e.__class__.__name__}: {e})") from None
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> "TrainConfig":
        if not isinstance(raw, dict):
            raise FnedgeError(f"{source}: a training config must be a mapping")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(raw) - set(known)
        if unknown:
            raise FnedgeError(f"{source}: unknown training setting(s) {sorted(unknown)}")
        lora = raw.get("lora")
        raw = {**raw, "lora": None if lora is None or lora is False else LoraSettings.from_dict(lora, source)}
        config = cls(**raw)
        config.validate(source)
        return config

    def validate(self, source: str = "config") -> None:
        positive = ["n_samples", "vocab_size", "max_tokens", "batch_tokens", "eval_every", "checkpoint_every"]
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise FnedgeError(f"{source}: '{name}' must be a positive integer")
        if not (self.epochs > 0 and self.lr > 0):
            raise FnedgeError(f"{source}: 'epochs' and 'lr' must be positive")
        if not (isinstance(self.context_loss_weight, (int, float)) and 0 <= self.context_loss_weight <= 1):
            raise FnedgeError(f"{source}: 'context_loss_weight' must be a number from 0 to 1")
        if self.save_dtype not in ("float16", "float32"):
            raise FnedgeError(f"{source}: 'save_dtype' must be float16 or float32")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise FnedgeError(f"{source}: 'precision' must be auto, bf16 or fp32")
        if self.batch_tokens < self.max_tokens:
            raise FnedgeError(f"{source}: 'batch_tokens' must be at least 'max_tokens'")
        if self.base is not None and self.lora is None:
            raise FnedgeError(f"{source}: 'base' is only used by LoRA runs (add a 'lora' mapping or --lora)")
        if self.base is not None and not isinstance(self.base, str):
            raise FnedgeError(f"{source}: 'base' must be a path (an HF model folder or a .gguf file)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        from fnedge.io import write_text_atomic
        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))
