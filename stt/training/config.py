"""Dataclasses behind ``conf/train.yaml`` and its groups (model, data, optim, trainer, augment),
and the ``finetune`` section of ``conf/finetune.yaml``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from stt.data.augment import AugmentConfig
from stt.errors import ConfigError
from stt.model import ModelConfig


def _require(ok: bool, key: str, rule: str, value: object) -> None:
    """Refuse a bad value before any work starts (not after an epoch, not as a traceback)."""
    if not ok:
        raise ConfigError(f"{key} must be {rule}, got {value!r}")


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


@dataclass
class DataConfig:
    """Manifests and batching. ``train_weights`` (same length as ``train``, or empty for all 1)
    repeats a manifest per epoch: 2 = twice, 0.5 = a random half."""

    train: list[str] = field(default_factory=list)
    train_weights: list[float] = field(default_factory=list)
    dev: list[str] = field(default_factory=list)
    max_batch_seconds: float = 120.0  # padded audio seconds per batch (per process)
    max_batch_size: int | None = None
    min_duration: float = 0.2  # seconds; shorter utterances are dropped from training
    max_duration: float = 20.0  # seconds; longer utterances are dropped from training
    num_workers: int = 2
    # Decode the training audio once into the device's memory and build, augment and pad every
    # batch there (stt.data.on_device): for a GPU, which CPU workers cannot keep busy.
    on_device: bool = False

    def __post_init__(self) -> None:
        if self.train_weights:
            _require(
                len(self.train_weights) == len(self.train),
                "data.train_weights",
                f"one weight per data.train manifest ({len(self.train)})",
                list(self.train_weights),
            )
        bad = [w for w in self.train_weights if not (_finite(w) and w >= 0)]
        _require(not bad, "data.train_weights", "finite and >= 0", list(self.train_weights))
        _require(
            _finite(self.max_batch_seconds) and self.max_batch_seconds > 0,
            "data.max_batch_seconds", "a positive number of seconds", self.max_batch_seconds,
        )  # fmt: skip
        if self.max_batch_size is not None:
            _require(self.max_batch_size >= 1, "data.max_batch_size", ">= 1", self.max_batch_size)
        _require(
            _finite(self.min_duration) and _finite(self.max_duration)
            and 0 <= self.min_duration < self.max_duration,
            "data.min_duration/max_duration", "0 <= min < max seconds",
            [self.min_duration, self.max_duration],
        )  # fmt: skip
        _require(self.num_workers >= 0, "data.num_workers", ">= 0", self.num_workers)


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then a decay schedule, and gradient clipping."""

    lr: float = 2e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    weight_decay: float = 1e-2
    warmup_steps: int = 300
    schedule: str = "inverse_sqrt"  # inverse_sqrt | cosine | constant
    total_steps: int = 0  # for cosine: steps to decay over (0 = trainer.max_steps)
    min_lr_ratio: float = 0.05
    grad_clip: float = 5.0

    def __post_init__(self) -> None:
        _require(_finite(self.lr) and self.lr >= 0, "optim.lr", "a finite number >= 0", self.lr)
        _require(
            len(self.betas) == 2 and all(_finite(b) and 0 <= b < 1 for b in self.betas),
            "optim.betas", "two numbers in [0, 1)", list(self.betas),
        )  # fmt: skip
        _require(
            _finite(self.weight_decay) and self.weight_decay >= 0,
            "optim.weight_decay", ">= 0", self.weight_decay,
        )  # fmt: skip
        _require(self.warmup_steps >= 0, "optim.warmup_steps", ">= 0", self.warmup_steps)
        _require(
            self.schedule in ("inverse_sqrt", "cosine", "constant"),
            "optim.schedule", "inverse_sqrt, cosine or constant", self.schedule,
        )  # fmt: skip
        _require(self.total_steps >= 0, "optim.total_steps", ">= 0", self.total_steps)
        _require(
            _finite(self.min_lr_ratio) and 0 <= self.min_lr_ratio <= 1,
            "optim.min_lr_ratio", "in [0, 1]", self.min_lr_ratio,
        )  # fmt: skip
        _require(
            _finite(self.grad_clip) and self.grad_clip >= 0,
            "optim.grad_clip", ">= 0 (0 = no clipping)", self.grad_clip,
        )  # fmt: skip


@dataclass
class TrainerConfig:
    """How long to train, how often to evaluate, when to stop, where and how to run."""

    seed: int = 1
    max_epochs: int = 100
    max_steps: int = 0  # 0 = no limit
    max_time_minutes: float = 0.0  # 0 = no limit
    eval_every_steps: int = 0  # 0 = at the end of every epoch
    checkpoint_every_steps: int = 0  # extra `last` checkpoints between evaluations (0 = none)
    monitor: str = "loss"  # loss | wer | cer, averaged over the dev sets
    min_delta: float = 0.001
    patience: int = 5  # evaluations without improvement before stopping
    resume: str = "auto"  # auto (continue from run_dir/last.pt if there) | never | PATH
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16/fp16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    log_every_steps: int = 10
    tensorboard: bool = True
    progress: bool = True
    threads: int = 0  # torch CPU threads (0 = leave torch's default)

    def __post_init__(self) -> None:
        _require(self.max_epochs >= 1, "trainer.max_epochs", ">= 1", self.max_epochs)
        for key in ("max_steps", "eval_every_steps", "checkpoint_every_steps", "threads"):
            _require(getattr(self, key) >= 0, f"trainer.{key}", ">= 0", getattr(self, key))
        _require(self.log_every_steps >= 1, "trainer.log_every_steps", ">= 1",
                 self.log_every_steps)  # fmt: skip
        _require(
            _finite(self.max_time_minutes) and self.max_time_minutes >= 0,
            "trainer.max_time_minutes", ">= 0 (0 = no limit)", self.max_time_minutes,
        )  # fmt: skip
        _require(
            self.monitor in ("loss", "wer", "cer"), "trainer.monitor", "loss, wer or cer",
            self.monitor,
        )  # fmt: skip
        _require(_finite(self.min_delta) and self.min_delta >= 0, "trainer.min_delta", ">= 0",
                 self.min_delta)  # fmt: skip
        _require(self.patience >= 1, "trainer.patience", ">= 1 evaluation", self.patience)
        _require(
            bool(re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(self.device).lower())),
            "trainer.device", "auto, cpu, cuda or cuda:N", self.device,
        )  # fmt: skip
        _require(
            self.precision in ("auto", "fp32", "bf16", "fp16"),
            "trainer.precision", "auto, fp32, bf16 or fp16", self.precision,
        )  # fmt: skip


@dataclass
class FinetuneConfig:
    """What ``stt finetune`` adds to training (``conf/finetune.yaml``): a grown vocabulary,
    frozen early layers, original data mixed in, before/after evaluation sets, and the share of
    data.train held out when no dev set is given."""

    add_new_chars: bool = True  # grow the vocabulary by data.train characters it lacks
    extra_chars: str = ""  # characters to add even if data.train does not use them
    freeze_input_proj: bool = True  # the feature front end (MFCC -> channels)
    freeze_blocks: int = 0  # the first N residual blocks
    only_norms: bool = False  # train only the norm layers' scales and shifts
    # Batch-norm layers keep the base model's running statistics (their scale and shift still
    # train): a few minutes of one accent must not redefine "normal" for all the speech it knew.
    freeze_norm_stats: bool = True
    mix_manifests: list[str] = field(default_factory=list)  # original training data
    mix_ratio: float = 1.0  # mixed-in utterances per epoch, as a fraction of the new ones
    eval_new: list[str] = field(default_factory=list)  # the new accent's test manifests
    eval_original: list[str] = field(default_factory=list)  # the original dev manifests
    # Without data.dev, this share of data.train's audio (whole speakers) is held out as the
    # dev set, and as the eval_new set if that is empty.
    dev_fraction: float = 0.1

    def __post_init__(self) -> None:
        _require(
            _finite(self.dev_fraction) and 0 < self.dev_fraction < 1,
            "finetune.dev_fraction", "between 0 and 1", self.dev_fraction,
        )  # fmt: skip


@dataclass
class TrainConfig:
    run_dir: str = "runs/train"
    init_from: str | None = None  # start from this checkpoint's weights (fine-tuning)
    finetune: FinetuneConfig | None = None  # set by `stt finetune` (conf/finetune.yaml)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
