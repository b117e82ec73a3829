"""One run's training settings, saved as `config.yaml` next to its checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from fnedge.catalog import is_number
from fnedge.errors import FnedgeError

if TYPE_CHECKING:
    from fnedge.data import DataConfig


LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _mapping(raw: Any, name: str, cls: type, source: str) -> dict[str, Any]:
    """A stage's settings mapping (`true` for every default), with unknown keys refused."""
    if raw is True:
        raw = {}
    if not isinstance(raw, dict):
        raise FnedgeError(f"{source}: '{name}' must be a mapping of settings (or true)")
    unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise FnedgeError(f"{source}: unknown '{name}' setting(s) {sorted(unknown)}")
    return raw


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class LoraSettings:
    """The `lora:` mapping of a training config: adapt a pretrained base instead of training from scratch."""
    rank: int = 16
    alpha: float = 32.0                # updates are scaled by alpha / rank
    # 0, as peft's own default: on CPU each projection's dropout copies its input, and fc-micro's
    # LoRA steps took 1.3x (eager) to 1.7x (compiled) as long with 0.05 (benchmarks/new_tool/README.md)
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(LLAMA_PROJECTIONS))
    quantize_base: str | None = None   # QLoRA: hold the frozen base in 4 bits (bitsandbytes nf4 or fp4)
    # > 0: adds keep_base x KL(base || adapted) on the reply tokens the base already predicts right,
    # so that adapting to new tools moves the old answers less (fnedge/train/lora.py, `held_to_base`)
    keep_base: float = 0.0

    @classmethod
    def from_dict(cls, raw: Any, source: str) -> "LoraSettings":
        settings = cls(**_mapping(raw, "lora", cls, source))
        if not (_is_int(settings.rank) and settings.rank > 0):
            raise FnedgeError(f"{source}: 'lora.rank' must be a positive integer")
        if not (isinstance(settings.alpha, (int, float)) and settings.alpha > 0):
            raise FnedgeError(f"{source}: 'lora.alpha' must be a positive number")
        if not (isinstance(settings.dropout, (int, float)) and 0 <= settings.dropout < 1):
            raise FnedgeError(f"{source}: 'lora.dropout' must be a number from 0 up to (not including) 1")
        modules = settings.target_modules
        if not (isinstance(modules, list) and modules and all(isinstance(m, str) and m for m in modules)):
            raise FnedgeError(f"{source}: 'lora.target_modules' must be a non-empty list of module names")
        if not (is_number(settings.keep_base) and settings.keep_base >= 0):
            raise FnedgeError(f"{source}: 'lora.keep_base' must be a number of 0 or more, got {settings.keep_base!r}")
        if settings.quantize_base not in (None, *QLORA_TYPES):
            raise FnedgeError(f"{source}: 'lora.quantize_base' must be one of {', '.join(QLORA_TYPES)} "
                              f"(bitsandbytes 4-bit types), got {settings.quantize_base!r}")
        return settings


QLORA_TYPES = ("nf4", "fp4")
QAT_SCHEMES = ("q4_0",)
# A QAT run fine-tunes a trained model: its defaults are a fine-tune's, used where the config leaves
# them out. 2e-4 is where the from-scratch schedule ends (lr 2e-3 x min_lr_ratio 0.1); a quarter
# epoch is enough for the weights to settle on the 4-bit grid without drifting from the base.
QAT_DEFAULTS = {"lr": 2e-4, "epochs": 0.25, "warmup_steps": 20, "average_decay": 0.0}


@dataclass
class QatSettings:
    """The `qat:` mapping: fine-tune `base` while its weights pass through the export's quantizer."""
    scheme: str = "q4_0"               # the GGUF type the model will be exported as

    @classmethod
    def from_dict(cls, raw: Any, source: str) -> "QatSettings":
        settings = cls(**_mapping(raw, "qat", cls, source))
        if settings.scheme not in QAT_SCHEMES:
            raise FnedgeError(f"{source}: 'qat.scheme' must be one of {', '.join(QAT_SCHEMES)} "
                              f"(got {settings.scheme!r})")
        return settings


# DPO fine-tunes a trained model on a few hundred pairs: a fine-tune's schedule, used where the
# config leaves it out (as QAT_DEFAULTS). A batch holds ~10 pairs: 100 pairs make 10 steps an epoch.
DPO_DEFAULTS = {"lr": 2e-4, "epochs": 2.0, "warmup_steps": 5, "average_decay": 0.0}
DISTILL_MODES = ("auto", "logits", "data")


@dataclass
class DpoSettings:
    """The `dpo:` mapping: preference training on the starting model's own wrong replies (fnedge/train/dpo.py)."""
    beta: float = 0.1                  # how far the policy may move from the reference per unit of reward
    n_prompts: int = 400               # generated conversations whose replies are checked
    prompt_seed: int | None = None     # None: the starting model's data_seed + 1 (prompts it was not trained on)
    max_new_tokens: int = 128          # per reply, as the runtime's max_tokens
    constrained: bool = True           # decode calls under the call grammar, as the runtime does
    chosen_nll_weight: float = 0.0     # + this x the chosen reply's per-token NLL (RPO); 0: plain DPO

    @classmethod
    def from_dict(cls, raw: Any, source: str) -> "DpoSettings":
        settings = cls(**_mapping(raw, "dpo", cls, source))
        if not (is_number(settings.beta) and settings.beta > 0):
            raise FnedgeError(f"{source}: 'dpo.beta' must be a positive number, got {settings.beta!r}")
        for name in ("n_prompts", "max_new_tokens"):
            if not (_is_int(getattr(settings, name)) and getattr(settings, name) > 0):
                raise FnedgeError(f"{source}: 'dpo.{name}' must be a positive integer")
        if settings.prompt_seed is not None and not _is_int(settings.prompt_seed):
            raise FnedgeError(f"{source}: 'dpo.prompt_seed' must be an integer (or left out)")
        if not isinstance(settings.constrained, bool):
            raise FnedgeError(f"{source}: 'dpo.constrained' must be true or false")
        if not (is_number(settings.chosen_nll_weight) and settings.chosen_nll_weight >= 0):
            raise FnedgeError(f"{source}: 'dpo.chosen_nll_weight' must be a number >= 0")
        return settings


@dataclass
class DistillSettings:
    """The `distill:` mapping: train a student (`preset`, or `base`) from a teacher model (fnedge/train/distill.py)."""
    teacher: str | None = None         # the teacher's HF model folder (or --teacher)
    alpha: float = 0.5                 # the teacher's share: of the loss (logits), of the data (data)
    temperature: float = 2.0           # softens both distributions in the KL term
    mode: str = "auto"                 # logits (KL, shared vocabulary), data (teacher-written replies), auto
    max_new_tokens: int = 192          # per teacher reply (data mode)

    @classmethod
    def from_dict(cls, raw: Any, source: str) -> "DistillSettings":
        settings = cls(**_mapping(raw, "distill", cls, source))
        if not isinstance(settings.teacher, str) or not settings.teacher:
            raise FnedgeError(f"{source}: distillation needs a teacher model ('distill.teacher' or --teacher PATH)")
        if not (is_number(settings.alpha) and 0 <= settings.alpha <= 1):
            raise FnedgeError(f"{source}: 'distill.alpha' must be a number from 0 to 1, got {settings.alpha!r}")
        if not (is_number(settings.temperature) and settings.temperature > 0):
            raise FnedgeError(f"{source}: 'distill.temperature' must be a positive number, "
                              f"got {settings.temperature!r}")
        if settings.mode not in DISTILL_MODES:
            raise FnedgeError(f"{source}: 'distill.mode' must be one of {', '.join(DISTILL_MODES)}, "
                              f"got {settings.mode!r}")
        if not (_is_int(settings.max_new_tokens) and settings.max_new_tokens > 0):
            raise FnedgeError(f"{source}: 'distill.max_new_tokens' must be a positive integer")
        return settings


@dataclass
class TrainConfig:
    preset: str = "fc-micro"
    catalog: str | None = None         # None: the built-in default catalog
    hints: str | None = None           # per-tool phrasing/value hints for the data generator
    data: str | None = None            # an existing conversations JSONL; None: generate one
    n_samples: int = 112000            # conversations generated when `data` is None
    data_seed: int = 0
    dev_fraction: float = 0.03         # held out by phrasing template and value
    tool_weights: dict[str, float] | None = None  # generator's weight per tool (DataConfig.tool_weights)
    longer_text_share: float = 0.0     # DataConfig.longer_text_share
    vocab_size: int = 6400             # the tokenizer's ceiling; `merge_min_frequency` usually stops it first
    # A BPE merge is learned only when its pair occurs at least this often per training
    # conversation (times their number, at least 2). A tiny model sees a rarer token too few
    # times to copy it: at 2, "Wellington" was one token seen 56 times in 107k conversations,
    # and the model wrote another city in its place; split into common pieces it is copied.
    merge_min_frequency: float = 0.002
    max_tokens: int = 384              # longer conversations are dropped (and counted)
    batch_tokens: int = 2048           # padded tokens per optimizer step (small: tiny models need many steps)
    epochs: float = 1.0
    lr: float = 2e-3
    context_loss_weight: float = 0.3   # weight of the next-token loss on non-reply tokens (user turns, tool results)
    call_loss_weight: float = 1.0      # weight of each reply's first token and of the tokens inside a <tool_call>
    min_lr_ratio: float = 0.1
    warmup_steps: int = 150
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    # Save an exponential moving average of the weights (fnedge/train/averaging.py) instead of the
    # last step's; 0 turns it off. 0.999 averages about the last 1,000 steps: fc-micro's dev loss
    # 0.1364 against the last step's 0.1478 (runs/s16e). QAT and DPO runs default to 0.
    average_decay: float = 0.999
    # Steps between dev passes, and always at the last step. A pass changes no weight and costs
    # fc-micro's 30-minute recipe 10.5 s (2,064 dev conversations), so fc-micro's 4,919 steps
    # get three passes (2,500, and the last step's weights and their average) instead of six.
    eval_every: int = 2500
    checkpoint_every: int = 100
    # Wall minutes the whole command may take (data, tokenizer, steps, dev passes); 0: no limit.
    # Where the planned steps would not fit, the run times its steps and takes fewer, with the
    # learning-rate schedule stretched over them (fnedge/train/time_budget.py): fc-micro's recipe
    # took 29.9 min on a CPU with bf16 units and is cut to 38% of its steps on one without (fp32).
    time_budget_minutes: float = 30.0
    seed: int = 0
    threads: int = 0                   # 0: torch's default
    save_dtype: str = "float16"        # the finished model's weights (halves the file; exports read it)
    precision: str = "auto"            # bf16 autocast where the CPU has bf16 units (~1.8x here), else fp32
    compile: bool = False              # torch.compile the training forward: faster steps after a ~1 min warm-up
    # LoRA runs (fnedge/train/lora.py) adapt `base` instead of training `preset`; vocab_size is unused.
    lora: LoraSettings | None = None
    # QAT runs (fnedge/train/qat.py) fine-tune `base` as its 4-bit export will compute (QAT_DEFAULTS).
    qat: QatSettings | None = None
    # DPO runs (fnedge/train/dpo.py) preference-train `base` (DPO_DEFAULTS); distillation runs
    # (fnedge/train/distill.py) train `preset` from scratch, or `base`, from a teacher.
    dpo: DpoSettings | None = None
    distill: DistillSettings | None = None
    base: str | None = None            # LoRA/QAT starting model: HF folder or .gguf; None: the built-in model
    # A generalist reads each request's tools from its prompt (fnedge/data/generalist.py); with no
    # `data`, its conversations are generated with synthesized catalogs. Data whose records carry
    # `tool_schemas` makes a generalist too.
    generalist: bool = False

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
        qat = raw.get("qat")
        if qat is not None and qat is not False:
            raw = {**QAT_DEFAULTS, **raw, "qat": QatSettings.from_dict(qat, source)}
        else:
            raw["qat"] = None
        dpo = raw.get("dpo")
        if dpo is not None and dpo is not False:
            raw = {**DPO_DEFAULTS, **raw, "dpo": DpoSettings.from_dict(dpo, source)}
        else:
            raw["dpo"] = None
        distill = raw.get("distill")
        raw["distill"] = None if distill is None or distill is False else DistillSettings.from_dict(distill, source)
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
        if not (is_number(self.time_budget_minutes) and self.time_budget_minutes >= 0):
            raise FnedgeError(f"{source}: 'time_budget_minutes' must be a number >= 0 (0: no limit), "
                              f"got {self.time_budget_minutes!r}")
        if not (is_number(self.merge_min_frequency) and self.merge_min_frequency >= 0):
            raise FnedgeError(f"{source}: 'merge_min_frequency' must be a number >= 0 (merges per training conversation)")
        if not (is_number(self.average_decay) and 0 <= self.average_decay < 1):
            raise FnedgeError(f"{source}: 'average_decay' must be a number from 0 (off) to below 1, "
                              f"got {self.average_decay!r}")
        if not (is_number(self.context_loss_weight) and 0 <= self.context_loss_weight <= 1):
            raise FnedgeError(f"{source}: 'context_loss_weight' must be a number from 0 to 1")
        if not (is_number(self.call_loss_weight) and self.call_loss_weight > 0):
            raise FnedgeError(f"{source}: 'call_loss_weight' must be a positive number")
        if not (is_number(self.longer_text_share) and 0 <= self.longer_text_share <= 1):
            raise FnedgeError(f"{source}: 'longer_text_share' must be a number from 0 to 1")
        if self.tool_weights is not None and not isinstance(self.tool_weights, dict):
            raise FnedgeError(f"{source}: 'tool_weights' must map tool names to weights, e.g. {{add_todo: 3}}")
        shaping = [name for name in ("tool_weights", "longer_text_share") if getattr(self, name)]
        if shaping and (self.data or self.generalist):
            raise FnedgeError(f"{source}: {' and '.join(repr(s) for s in shaping)} shape the conversations a run "
                              f"generates from its catalog; this run reads "
                              f"{'data: ' + str(self.data) if self.data else 'generalist data'} instead")
        if self.save_dtype not in ("float16", "float32"):
            raise FnedgeError(f"{source}: 'save_dtype' must be float16 or float32")
        if not isinstance(self.compile, bool):
            raise FnedgeError(f"{source}: 'compile' must be true or false")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise FnedgeError(f"{source}: 'precision' must be auto, bf16 or fp32")
        if self.batch_tokens < self.max_tokens:
            raise FnedgeError(f"{source}: 'batch_tokens' must be at least 'max_tokens'")
        if self.lora is not None and self.qat is not None:
            raise FnedgeError(f"{source}: 'lora' and 'qat' are two different stages; a run is one of them "
                              f"(QAT-train a LoRA-merged model in a second run with base: RUN/model)")
        stages = [name for name in ("lora", "qat", "dpo", "distill") if getattr(self, name) is not None]
        if len(stages) > 1:
            raise FnedgeError(f"{source}: {' and '.join(repr(s) for s in stages)} are different stages; "
                              f"a run is one of them (start the next stage from RUN/model with 'base')")
        if self.base is not None and not stages:
            raise FnedgeError(f"{source}: 'base' is only used by LoRA runs and QAT runs, as their starting model "
                              f"(add a 'lora' or 'qat' mapping, or --lora / --qat); DPO and distillation runs "
                              f"start from it too (--dpo, --distill)")
        if self.base is not None and not isinstance(self.base, str):
            raise FnedgeError(f"{source}: 'base' must be a path (an HF model folder or a .gguf file)")

    def data_config(self) -> "DataConfig":
        """The generator settings this config carries: every stage that generates conversations
        (the training data, DPO's prompts) uses the same ones."""
        from fnedge.data import DataConfig
        return DataConfig(tool_weights=dict(self.tool_weights or {}), longer_text_share=self.longer_text_share)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        from fnedge.io import write_text_atomic
        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))
