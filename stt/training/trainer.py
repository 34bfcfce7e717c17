"""`stt train`: one straight training loop, from data to a plateau-stopped checkpoint.

Read it top to bottom: set up (device, process group, seeds), data (manifests -> feasible
utterances -> bucketed batches), model, optimizer and schedule, resume if asked, then epochs of
steps with evaluation, checkpoints and the stopping rules. DDP is a few guarded lines.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from stt import inference
from stt.atomic import leftover_temporaries
from stt.audio import audio_duration
from stt.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    model_state,
    save_checkpoint,
)
from stt.data.augment import SpecAugment, WaveformAugment
from stt.data.dataset import (
    Batch,
    ManifestSpec,
    SpeechDataset,
    collate,
    filter_feasible,
    mix_manifests,
)
from stt.data.manifest import Utterance, read_manifest
from stt.data.on_device import DeviceCorpus, DeviceLoader
from stt.data.sampler import DurationBucketSampler
from stt.decoding import GreedyDecoder
from stt.errors import AudioError, CheckpointError, ConfigError, STTError
from stt.metrics import error_counts
from stt.model import WaveNetCTC
from stt.text import Vocabulary
from stt.training import distributed as D
from stt.training.adapt import mix_in, prepare_model
from stt.training.config import TrainConfig, TrainerConfig
from stt.training.metrics_log import MetricsLogger, plot_curves
from stt.training.schedule import build_scheduler
from stt.training.stopping import PlateauStopper

log = logging.getLogger("stt.train")


@dataclass
class TrainResult:
    """How a run ended: why it stopped, where it got to, and its best dev figures."""

    run_dir: str
    stop_reason: str
    epoch: int
    step: int
    best_metric: float | None
    dev: dict[str, dict[str, float]] = field(default_factory=dict)
    dropped_infeasible: int = 0
    skipped_steps: int = 0
    rank_weight_fingerprints: list[str] = field(default_factory=list)
    wall_minutes: float = 0.0  # this invocation's time (a resumed run counts from its restart)


class _Window:
    """Loss and audio seconds since the last progress update."""

    def __init__(self) -> None:
        self.loss_sum, self.n, self.seconds, self.start = 0.0, 0, 0.0, time.monotonic()

    def add(self, loss: float) -> None:
        self.loss_sum += loss
        self.n += 1

    @property
    def mean(self) -> float:
        return self.loss_sum / max(self.n, 1)

    def elapsed(self) -> float:
        return max(time.monotonic() - self.start, 1e-9)


@dataclass
class DevSet:
    name: str
    loader: DataLoader
    sampler: DurationBucketSampler
    seconds: float


# ---------------------------------------------------------------------------------------------
# Set-up helpers
# ---------------------------------------------------------------------------------------------


def pick_device(spec: str, info: D.DistInfo) -> torch.device:
    """The device of this process: plain ``cuda`` means the local rank's GPU under torchrun."""
    device = inference.pick_device(spec, "trainer.device")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{info.local_rank}")
    return device


def pick_precision(spec: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if spec == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    table = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if spec not in table:
        raise ConfigError(f"trainer.precision must be auto, fp32, bf16 or fp16, not {spec!r}")
    if table[spec] is torch.float16 and device.type != "cuda":
        raise ConfigError("trainer.precision=fp16 needs CUDA; use bf16 or fp32 on the CPU")
    return table[spec]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """A failed write of ``path`` (a full disk, a read-only run folder) as one line."""
    try:
        yield
    except OSError as exc:
        raise STTError(f"{path}: cannot write ({exc.strerror or exc})") from None


def remove_leftover_writes(run_dir: Path) -> None:
    """Delete the temporary files of checkpoint writes that a killed run (kill -9) left behind."""
    for name in ("last.pt", "best.pt"):
        for tmp in leftover_temporaries(run_dir / name):
            with contextlib.suppress(OSError):
                tmp.unlink()
                log.info("removed %s, left by a run killed while writing a checkpoint", tmp)


def dev_name(path: str) -> str:
    """A dev set's name in logs: its folder and file stem, e.g. ``synth/dev``."""
    p = Path(path)
    return f"{p.parent.name}/{p.stem}" if p.parent.name else p.stem


def make_loader(dataset: SpeechDataset, sampler, workers: int, seed: int) -> DataLoader:
    # A private generator: creating the loader's iterator must not draw from the global RNG,
    # or a resumed run's dropout and SpecAugment would see different random numbers.
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=False,
    )


def ctc_loss(log_probs: torch.Tensor, out_lengths: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean per-character CTC loss, always computed in fp32 (outside any autocast)."""
    with torch.autocast(device_type=log_probs.device.type, enabled=False):
        return F.ctc_loss(
            log_probs.float().transpose(0, 1),  # (frames, batch, vocab)
            batch.targets,
            out_lengths,
            batch.target_lengths,
            blank=0,
            reduction="mean",
            zero_infinity=False,
        )


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def build_train_set(
    cfg: TrainConfig, model: WaveNetCTC, vocab: Vocabulary
) -> tuple[list[Utterance], int]:
    """Training utterances after duration limits and the CTC feasibility check."""
    data = cfg.data
    if not data.train:
        raise ConfigError("no training data: set data.train=[path/to/train.jsonl,...]")
    weights = list(data.train_weights) or [1.0] * len(data.train)
    if len(weights) != len(data.train):
        raise ConfigError("data.train_weights must have one weight per data.train manifest")
    specs = [ManifestSpec(path, weight) for path, weight in zip(data.train, weights, strict=True)]
    utterances = mix_manifests(specs, cfg.trainer.seed)
    if cfg.finetune is not None:  # original data against forgetting
        utterances += mix_in(cfg.finetune, len(utterances), cfg.trainer.seed)
    in_range = [u for u in utterances if data.min_duration <= u.duration <= data.max_duration]
    if len(in_range) < len(utterances):
        log.warning(
            "dropped %d utterance(s) outside %.1f-%.1f s",
            len(utterances) - len(in_range),
            data.min_duration,
            data.max_duration,
        )
    in_range = readable_only(in_range)
    max_speed = max(cfg.augment.speeds) if cfg.augment.speed_perturb else 1.0
    kept, dropped = filter_feasible(in_range, vocab, lambda s: frames_for(model, s), max_speed)
    if dropped:
        log.warning(
            "dropped %d utterance(s) whose transcript cannot fit the CTC output frames "
            "(or is empty / outside the vocabulary), e.g. %s",
            len(dropped),
            dropped[0].audio_filepath,
        )
    if not kept:
        raise ConfigError("no usable training utterances left after filtering")
    return kept, len(dropped)


def readable_only(utterances: list[Utterance]) -> list[Utterance]:
    """Drop (with one warning) utterances whose audio is missing or unreadable: a header check
    of every file before training, so a bad file costs a line in the log, not the run."""

    def ok(utt: Utterance) -> str | None:
        try:
            audio_duration(utt.audio_filepath)
        except AudioError as exc:
            return str(exc)
        return None

    with ThreadPoolExecutor(8) as pool:
        problems = list(pool.map(ok, utterances))
    bad = [p for p in problems if p]
    if bad:
        log.warning("dropped %d utterance(s) with unusable audio, e.g. %s", len(bad), bad[0])
    return [u for u, p in zip(utterances, problems, strict=True) if p is None]


def frames_for(model: WaveNetCTC, seconds: float) -> int:
    samples = torch.tensor([int(seconds * model.config.features.sample_rate)])
    return int(model.output_lengths(samples)[0])


def build_dev_sets(cfg: TrainConfig, model: WaveNetCTC, vocab: Vocabulary) -> list[DevSet]:
    dev_sets = []
    for path in cfg.data.dev:
        utterances = read_manifest(path)
        kept, dropped = filter_feasible(utterances, vocab, lambda s: frames_for(model, s), 1.0)
        if dropped:
            log.warning(
                "%s: %d dev utterance(s) cannot be scored by CTC, left out", path, len(dropped)
            )
        if not kept:  # found now, not after a whole epoch of training
            raise ConfigError(f"{path}: no dev utterance that can be scored ({len(utterances)} "
                              "lines); data.dev needs at least one")  # fmt: skip
        dataset = SpeechDataset(kept, vocab)
        sampler = DurationBucketSampler(
            dataset.durations, cfg.data.max_batch_seconds, shuffle=False, seed=0
        )
        loader = make_loader(dataset, sampler, cfg.data.num_workers, cfg.trainer.seed)
        dev_sets.append(DevSet(dev_name(path), loader, sampler, sum(dataset.durations)))
    return dev_sets


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(
    model: WaveNetCTC,
    dev_sets: list[DevSet],
    vocab: Vocabulary,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
) -> dict[str, dict[str, float]]:
    """Dev loss and greedy WER/CER per dev set (model in eval mode, restored afterwards)."""
    was_training = model.training
    model.eval()
    results: dict[str, dict[str, float]] = {}
    for dev in dev_sets:
        loss_sum, n_batches, refs, hyps = 0.0, 0, [], []
        dev.sampler.set_epoch(0)  # rewind: the sampler remembers how far the last pass got
        for batch in dev.loader:
            if not len(batch):  # every file in it became unreadable
                continue
            batch = batch.to(device)
            with torch.autocast(
                device_type=device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
            ):
                log_probs, out_lengths = model(batch.waveforms, batch.lengths)
            loss = ctc_loss(log_probs, out_lengths, batch)
            if torch.isfinite(loss):
                loss_sum += loss.item()
                n_batches += 1
            refs += batch.texts
            hyps += GreedyDecoder(vocab).texts(log_probs, out_lengths)
        if not refs:
            raise ConfigError(f"dev set {dev.name} has no utterance that can be scored")
        counts = error_counts(refs, hyps)
        results[dev.name] = {
            "loss": loss_sum / max(n_batches, 1),
            "wer": counts.wer,
            "cer": counts.cer,
        }
    model.train(was_training)
    return results


def monitored_value(results: dict[str, dict[str, float]], monitor: str) -> float:
    if monitor not in ("loss", "wer", "cer"):
        raise ConfigError(f"trainer.monitor must be loss, wer or cer, not {monitor!r}")
    return float(np.mean([r[monitor] for r in results.values()]))


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def train(cfg: TrainConfig) -> TrainResult:
    """Train until the dev metric plateaus (or max_epochs / max_steps / max_time)."""
    info = D.dist_info()
    device = pick_device(cfg.trainer.device, info)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns_group = D.init_distributed(info, device)
    try:
        result = _train(cfg, info, device)
    except BaseException:
        if owns_group:
            D.shutdown_distributed(clean=False)  # the other ranks may be in another collective
        raise
    if owns_group:
        D.shutdown_distributed()  # every rank together, after rank 0's last write
    return result


@dataclass
class Run:
    """What a run trains with, built once by :func:`set_up` and never rebound."""

    cfg: TrainConfig
    info: D.DistInfo
    device: torch.device
    autocast_dtype: torch.dtype | None
    run_dir: Path
    vocab: Vocabulary
    model: WaveNetCTC
    ddp_model: torch.nn.Module
    train_set: SpeechDataset
    sampler: DurationBucketSampler
    train_loader: DataLoader | DeviceLoader
    dev_sets: list[DevSet]
    spec_augment: SpecAugment | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    dropped: int
    metrics: MetricsLogger | None = None


@dataclass
class RunState:
    """Where a run is: (epoch, position) always name the next batch to train on."""

    stopper: PlateauStopper
    epoch: int = 0
    position: int = 0
    step: int = 0
    skipped_steps: int = 0
    stop_reason: str = ""
    previous_stop: str = ""  # why a resumed run had stopped, reported again if nothing changed
    last_results: dict[str, dict[str, float]] = field(default_factory=dict)
    started: float = 0.0
    window: _Window = field(default_factory=_Window)


def _train(cfg: TrainConfig, info: D.DistInfo, device: torch.device) -> TrainResult:
    run = set_up(cfg, info, device)
    tcfg = run.cfg.trainer
    st = RunState(PlateauStopper(tcfg.patience, tcfg.min_delta, "min"))
    resume(run, st)
    with writing(run.run_dir / "metrics.csv"):
        run.metrics = MetricsLogger(run.run_dir, tcfg.tensorboard) if info.is_main else None
    st.started = time.monotonic()

    run.ddp_model.train()
    while not st.stop_reason:
        # Checked before each epoch too, so a resumed run that already reached a limit (or a
        # plateau) stops at once, and raising the limit lets it go on.
        st.stop_reason = stop_rule(tcfg, st, at_epoch_start=True)
        if st.stop_reason:
            break
        run.sampler.set_epoch(st.epoch)
        run.sampler.load_state_dict({"epoch": st.epoch, "position": st.position})
        run.train_set.set_epoch(st.epoch)
        bar = tqdm(
            total=len(run.sampler),
            initial=st.position,
            desc=f"epoch {st.epoch}",
            unit="batch",
            disable=not (tcfg.progress and info.is_main),
            dynamic_ncols=True,
        )
        st.window = _Window()
        for batch in run.train_loader:
            if len(batch):
                st.skipped_steps += not train_step(run, st, batch)
            else:  # every file in it became unreadable since start-up (single process only)
                st.skipped_steps += 1
            run.scheduler.step()
            st.step += 1
            st.position += 1
            bar.update(1)
            end_of_epoch = st.position == len(run.sampler)
            if end_of_epoch:
                st.epoch, st.position = st.epoch + 1, 0

            if st.step % tcfg.log_every_steps == 0 or end_of_epoch:
                log_progress(run, st, bar)
            if (tcfg.eval_every_steps and st.step % tcfg.eval_every_steps == 0) or (
                end_of_epoch and not tcfg.eval_every_steps
            ):
                st.stop_reason = evaluate_and_checkpoint(run, st)
            elif tcfg.checkpoint_every_steps and st.step % tcfg.checkpoint_every_steps == 0:
                state_now = checkpoint_state(run, st)  # collective under DDP
                if info.is_main:
                    save_checkpoint(run.run_dir / "last.pt", state_now)
            st.stop_reason = D.broadcast_object(stop_rule(tcfg, st, at_epoch_start=False))
            if st.stop_reason or end_of_epoch:
                break
        bar.close()
    return wrap_up(run, st)


def set_up(cfg: TrainConfig, info: D.DistInfo, device: torch.device) -> Run:
    """Seeds, the run folder, then model, data, optimiser and schedule (and DDP around them)."""
    tcfg = cfg.trainer
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    autocast_dtype = pick_precision(tcfg.precision, device)
    run_dir = Path(cfg.run_dir)
    seed_everything(tcfg.seed + info.rank)
    if info.is_main:
        with writing(run_dir):
            run_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(OmegaConf.structured(cfg), run_dir / "config.yaml")
        remove_leftover_writes(run_dir)
    D.barrier()

    # Model (and vocabulary) -------------------------------------------------------------------
    vocab = Vocabulary.default()
    model = WaveNetCTC(cfg.model, len(vocab))
    if cfg.init_from:  # the checkpoint's model config wins over the run's
        model, vocab = init_from_checkpoint(cfg.init_from)
        cfg = replace(cfg, model=model.config)
    if cfg.finetune is not None:  # grow the vocabulary and head, freeze early layers
        model, vocab = prepare_model(cfg, model, vocab)
    model.to(device)
    if info.is_main:
        log.info("model: %s", model.describe())

    # Data -------------------------------------------------------------------------------------
    train_utts, dropped = build_train_set(cfg, model, vocab)
    augment = WaveformAugment(cfg.augment)
    train_set = SpeechDataset(train_utts, vocab, augment=augment, seed=tcfg.seed)
    sampler = DurationBucketSampler(
        train_set.durations,
        cfg.data.max_batch_seconds,
        shuffle=True,
        seed=tcfg.seed,
        num_replicas=info.world_size,
        rank=info.rank,
        max_batch_size=cfg.data.max_batch_size,
    )
    if cfg.data.on_device:
        corpus = DeviceCorpus(train_set, device, progress=tcfg.progress and info.is_main)
        log.info("data: %.2f GB of training audio on %s", corpus.nbytes / 1e9, device)
        train_loader = DeviceLoader(corpus, sampler, cfg.augment, tcfg.seed)
    else:
        train_loader = make_loader(train_set, sampler, cfg.data.num_workers, tcfg.seed)
    dev_sets = build_dev_sets(cfg, model, vocab) if info.is_main else []
    if info.is_main:
        log.info(
            "data: %d training utterances (%.2f h, %d batches/epoch/process), dev sets: %s",
            len(train_set),
            sum(train_set.durations) / 3600,
            len(sampler),
            ", ".join(d.name for d in dev_sets) or "none",
        )
    spec_augment = SpecAugment(cfg.augment).to(device) if cfg.augment.spec_augment else None

    # Optimisation -----------------------------------------------------------------------------
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],  # frozen layers stay out
        lr=cfg.optim.lr,
        betas=tuple(cfg.optim.betas),
        weight_decay=cfg.optim.weight_decay,
    )
    total = cfg.optim.total_steps or tcfg.max_steps
    scheduler = build_scheduler(
        optimizer, cfg.optim.schedule, cfg.optim.warmup_steps, total, cfg.optim.min_lr_ratio
    )
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype is torch.float16)
    ddp_model = (
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if info.enabled
        else model
    )
    return Run(
        cfg, info, device, autocast_dtype, run_dir, vocab, model, ddp_model, train_set, sampler,
        train_loader, dev_sets, spec_augment, optimizer, scheduler, scaler, dropped,
    )  # fmt: skip


def resume(run: Run, st: RunState) -> None:
    """Load model, optimiser, schedule, stopper, position and RNGs from a checkpoint, if asked."""
    resume_path = resolve_resume(run.cfg.trainer.resume, run.run_dir)
    if resume_path is None:
        return
    state = load_checkpoint(resume_path, map_location="cpu")
    check_compatible(state, run.model, run.vocab, resume_path)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    st.stopper.load_state_dict(state["stopper"])
    st.epoch, st.position, st.step = state["epoch"], state["sampler"]["position"], state["step"]
    if state.get("stop_reason", "").startswith("plateau"):
        st.previous_stop = state["stop_reason"]
    st.skipped_steps = state.get("skipped_steps", 0)
    st.last_results = state.get("dev_results", {})
    rng = state["rng"]
    set_rng_state(rng[run.info.rank] if run.info.rank < len(rng) else rng[0])
    if run.info.is_main:
        log.info("resumed from %s at epoch %d, step %d", resume_path, st.epoch, st.step)


def checkpoint_state(run: Run, st: RunState, finished: bool = False, reason: str = "") -> dict:
    """Everything to resume at (epoch, position); a collective call under DDP."""
    rngs = D.gather_objects(rng_state())
    return {
        **model_state(run.model, run.vocab),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "stopper": st.stopper.state_dict(),
        "rng": rngs,
        "epoch": st.epoch,
        "step": st.step,
        "sampler": {"epoch": st.epoch, "position": st.position},
        "skipped_steps": st.skipped_steps,
        "dev_results": st.last_results,
        "config": asdict(run.cfg),
        "finished": finished,
        "stop_reason": reason,
    }


def train_step(run: Run, st: RunState, batch: Batch) -> bool:
    """One optimisation step; False if it was skipped for a non-finite loss or gradient."""
    device, autocast_dtype = run.device, run.autocast_dtype
    batch = batch.to(device)
    with torch.autocast(
        device_type=device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
    ):
        log_probs, out_lengths = run.ddp_model(batch.waveforms, batch.lengths, run.spec_augment)
    loss = ctc_loss(log_probs, out_lengths, batch)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.unscale_(run.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.optim.grad_clip)
    # Gradients are already averaged across ranks, so every rank takes the same branch.
    finite = bool(torch.isfinite(loss) and torch.isfinite(grad_norm))
    if finite:
        run.scaler.step(run.optimizer)
        st.window.add(loss.item())
    else:
        log.warning("step %d: non-finite loss or gradient, step skipped", st.step)
    run.scaler.update()
    st.window.seconds += batch.seconds
    return finite


def log_progress(run: Run, st: RunState, bar: tqdm) -> None:
    """Training loss, speed and learning rate since the last update; a collective under DDP."""
    speed = D.all_reduce_sum(st.window.seconds, run.device) / st.window.elapsed()
    lr = run.scheduler.get_last_lr()[0]
    bar.set_postfix(loss=f"{st.window.mean:.3f}", audio_s_per_s=f"{speed:.0f}", lr=f"{lr:.2e}")
    if run.metrics is not None and st.window.n:
        with writing(run.metrics.path):
            run.metrics.log(
                st.step,
                st.epoch,
                {
                    "train/loss": st.window.mean,
                    "train/audio_seconds_per_second": speed,
                    "train/lr": lr,
                },
            )
    st.window = _Window()


def evaluate_and_checkpoint(run: Run, st: RunState) -> str:
    """Evaluate on rank 0, update the plateau rule, save last/best; '' or a stop reason."""
    tcfg, dev_sets = run.cfg.trainer, run.dev_sets
    reason, improved = "", not dev_sets  # without dev sets, the latest model is the best
    if run.info.is_main and dev_sets:
        st.last_results = evaluate(run.model, dev_sets, run.vocab, run.device, run.autocast_dtype)
        improved = st.stopper.update(monitored_value(st.last_results, tcfg.monitor))
        with writing(run.metrics.path):
            run.metrics.log(
                st.step,
                st.epoch,
                {f"dev/{n}/{k}": v for n, r in st.last_results.items() for k, v in r.items()},
            )
        summary = "  ".join(
            f"{n}: loss {r['loss']:.3f} WER {100 * r['wer']:.1f}% CER {100 * r['cer']:.1f}%"
            for n, r in st.last_results.items()
        )
        log.info(
            "epoch %d step %d | %s%s", st.epoch, st.step, summary, " (best)" if improved else ""
        )
        if st.stopper.should_stop:
            reason = (
                f"plateau: dev {tcfg.monitor} did not improve by {tcfg.min_delta} for "
                f"{tcfg.patience} evaluations (best {st.stopper.best:.4f})"
            )
    state_now = checkpoint_state(run, st)  # collective under DDP: every rank calls it
    if run.info.is_main:
        save_checkpoint(run.run_dir / "last.pt", state_now)
        if improved:
            save_checkpoint(run.run_dir / "best.pt", state_now)
    return D.broadcast_object(reason)


def stop_rule(tcfg: TrainerConfig, st: RunState, *, at_epoch_start: bool) -> str:
    """Why the run stops now, or ''.

    At the start of an epoch: a plateau (found by a previous run), max_epochs or max_steps.
    After a step: a plateau just found by evaluation, max_steps or max_time.
    """
    if st.stop_reason:
        return st.stop_reason
    if at_epoch_start and st.stopper.should_stop:
        return st.previous_stop or (
            f"plateau already reached (best dev {tcfg.monitor} {st.stopper.best:.4f})"
        )
    if at_epoch_start and st.epoch >= tcfg.max_epochs:
        return f"max_epochs reached ({tcfg.max_epochs})"
    if tcfg.max_steps and st.step >= tcfg.max_steps:
        return f"max_steps reached ({tcfg.max_steps})"
    minutes = (time.monotonic() - st.started) / 60
    if not at_epoch_start and tcfg.max_time_minutes and minutes >= tcfg.max_time_minutes:
        return f"max_time reached ({tcfg.max_time_minutes:g} min)"
    return ""


def wrap_up(run: Run, st: RunState) -> TrainResult:
    """The final checkpoint, curves and result.json; checks every rank ended with one model."""
    info, run_dir = run.info, run.run_dir
    # Under DDP every rank must end with the same weights; a mismatch is a bug worth shouting.
    fingerprints = D.gather_objects(weights_fingerprint(run.model))
    if len(set(fingerprints)) > 1:
        log.error("ranks ended with different weights: %s", fingerprints)
    final_state = checkpoint_state(run, st, finished=True, reason=st.stop_reason)
    if info.is_main:
        save_checkpoint(run_dir / "last.pt", final_state)
        log.info("stopped: %s", st.stop_reason)
        with writing(run.metrics.path):
            run.metrics.close()
        with writing(run_dir / "curves.png"):
            png = plot_curves(run_dir / "metrics.csv", run_dir / "curves.png")
        if png:
            log.info("curves: %s", png)
    result = TrainResult(
        run_dir=str(run_dir),
        stop_reason=st.stop_reason,
        epoch=st.epoch,
        step=st.step,
        best_metric=st.stopper.best,
        dev=st.last_results,
        dropped_infeasible=run.dropped,
        skipped_steps=st.skipped_steps,
        rank_weight_fingerprints=fingerprints,
        wall_minutes=round((time.monotonic() - st.started) / 60, 2),
    )
    if info.is_main:
        with writing(run_dir / "result.json"):
            (run_dir / "result.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A hash of every parameter, bit for bit.

    Buffers are left out: under DDP each rank's batch-norm running statistics follow its own
    last batch until the next forward pass re-broadcasts rank 0's.
    """
    digest = hashlib.sha1()
    for name, tensor in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def resolve_resume(spec: str, run_dir: Path) -> Path | None:
    """``auto``: run_dir/last.pt if it exists; ``never``: None; anything else: that file."""
    if spec == "never":
        return None
    if spec == "auto":
        last = run_dir / "last.pt"
        return last if last.exists() else None
    return Path(spec)


def check_compatible(state: dict, model: WaveNetCTC, vocab: Vocabulary, path: Path) -> None:
    """Refuse to resume a checkpoint whose model or vocabulary differ from this run's config."""
    if state.get("model_config") != asdict(model.config):
        raise CheckpointError(
            f"{path}: made with another model config; use a new run_dir or trainer.resume=never"
        )
    if state.get("vocab") != vocab.to_dict():
        raise CheckpointError(f"{path}: made with another vocabulary")
    for key in ("optimizer", "scheduler", "scaler", "stopper", "rng", "sampler"):
        if key not in state:
            raise CheckpointError(f"{path}: not a training checkpoint (no {key}); use init_from")


def init_from_checkpoint(path: str) -> tuple[WaveNetCTC, Vocabulary]:
    """A trained model (in training mode) and its vocabulary to start from (fine-tuning)."""
    state = load_checkpoint(path)
    loaded, loaded_vocab = model_from_checkpoint(state, path)
    log.info("initialised from %s", path)
    return loaded.train(), loaded_vocab
