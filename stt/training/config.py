"""Dataclasses behind ``conf/train.yaml`` and its groups (model, data, optim, trainer, augment),
and the ``finetune`` section of ``conf/finetune.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field

from stt.data.augment import AugmentConfig
from stt.model import ModelConfig


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


@dataclass
class FinetuneConfig:
    """What ``stt finetune`` adds to training (``conf/finetune.yaml``): a grown vocabulary,
    frozen early layers, original data mixed in, and before/after evaluation sets."""

    add_new_chars: bool = True  # grow the vocabulary by data.train characters it lacks
    extra_chars: str = ""  # characters to add even if data.train does not use them
    freeze_input_proj: bool = True  # the feature front end (MFCC -> channels)
    freeze_blocks: int = 0  # the first N residual blocks
    # Batch-norm layers keep the base model's running statistics (their scale and shift still
    # train): a few minutes of one accent must not redefine "normal" for all the speech it knew.
    freeze_norm_stats: bool = True
    mix_manifests: list[str] = field(default_factory=list)  # original training data
    mix_ratio: float = 0.3  # mixed-in utterances per epoch, as a fraction of the new ones
    eval_new: list[str] = field(default_factory=list)  # the new accent's test manifests
    eval_original: list[str] = field(default_factory=list)  # the original dev manifests


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
