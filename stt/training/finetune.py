"""`stt finetune`: adapt a trained model to new data, then compare it with where it started.

Fine-tuning is training (:func:`stt.training.trainer.train`) with a ``finetune`` section in the
config, which the trainer hands to the helpers here: the vocabulary comes from the checkpoint and
grows by the new transcripts' characters (the CTC head grows rows to match, old rows untouched),
early layers are frozen, and some original training data is mixed in against forgetting.
:func:`finetune` wraps the run with greedy evaluations of the starting and the fine-tuned model
and writes ``finetune_report.json`` and ``.md``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stt.data.manifest import Utterance, read_manifest
from stt.errors import ConfigError
from stt.model import MaskedBatchNorm1d, WaveNetCTC
from stt.text import Vocabulary
from stt.training.config import FinetuneConfig, TrainConfig

log = logging.getLogger("stt.finetune")

NEW_ROW_BIAS_MARGIN = 2.0  # new characters start this far (in logits) below the old mean
_MIX_RNG_TAG = 0x6D6978  # keeps the mix-in draw apart from other uses of trainer.seed


# ---------------------------------------------------------------------------------------------
# Vocabulary and CTC head
# ---------------------------------------------------------------------------------------------


def new_characters(vocab: Vocabulary, ft: FinetuneConfig, train_manifests: list[str]) -> list[str]:
    """Characters to add to ``vocab``: ``ft.extra_chars``, then (if ``ft.add_new_chars``) those
    of the training transcripts, in sorted order so a rerun builds the same vocabulary."""
    wanted = list(ft.extra_chars)
    if ft.add_new_chars:
        seen: set[str] = set()
        for path in train_manifests:
            for utt in read_manifest(path):
                seen |= vocab.oov_chars(utt.text)
        wanted += sorted(seen)
    added: list[str] = []
    for char in wanted:
        if char not in vocab and char not in added:
            added.append(char)
    return added


def grow_head(
    model: WaveNetCTC, vocab_size: int, margin: float = NEW_ROW_BIAS_MARGIN
) -> WaveNetCTC:
    """Give ``head.out`` ``vocab_size`` output rows, in place; the old rows are kept bit for bit.

    New rows get zero weights (so they start without opinion about the audio) and a bias at the
    mean of the old non-blank biases minus ``margin``: rarely emitted until trained, without
    disturbing the old characters' probabilities much.
    """
    old = model.head.out
    n_old = old.out_channels
    if vocab_size < n_old:
        raise ConfigError(f"cannot shrink the CTC head from {n_old} to {vocab_size} outputs")
    if vocab_size == n_old:
        return model
    new = nn.Conv1d(old.in_channels, vocab_size, 1).to(old.weight.device, old.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:n_old] = old.weight
        new.bias.fill_(float(old.bias[1:].mean()) - margin)
        new.bias[:n_old] = old.bias
    model.head.out = new
    model.vocab_size = vocab_size
    return model


# ---------------------------------------------------------------------------------------------
# Freezing
# ---------------------------------------------------------------------------------------------


def _keep_in_eval_mode(module: nn.Module, _inputs) -> None:
    # A frozen layer is a fixed function: no dropout, and batch-norm statistics stay as trained
    # (model.train() from the loop would otherwise switch both back on).
    module.eval()


def freeze(model: WaveNetCTC, ft: FinetuneConfig) -> list[str]:
    """Freeze the front end and/or the first ``ft.freeze_blocks`` blocks; their names."""
    if not 0 <= ft.freeze_blocks <= len(model.blocks):
        raise ConfigError(
            f"finetune.freeze_blocks must be 0..{len(model.blocks)} (the model's blocks), "
            f"got {ft.freeze_blocks}"
        )
    modules: dict[str, nn.Module] = {}
    if ft.freeze_input_proj:
        modules["input_proj"] = model.input_proj
    for i in range(ft.freeze_blocks):
        modules[f"blocks.{i}"] = model.blocks[i]
    for module in modules.values():
        module.requires_grad_(False)
        module.eval()
        module.register_forward_pre_hook(_keep_in_eval_mode)
    return list(modules)


def freeze_norm_statistics(model: WaveNetCTC) -> int:
    """Keep every batch norm on its running statistics (eval mode) while its affine parameters
    still train; returns how many layers that is."""
    norms = [m for m in model.modules() if isinstance(m, MaskedBatchNorm1d)]
    for module in norms:
        module.eval()
        module.register_forward_pre_hook(_keep_in_eval_mode)
    return len(norms)


def prepare_model(
    cfg: TrainConfig, model: WaveNetCTC, vocab: Vocabulary
) -> tuple[WaveNetCTC, Vocabulary]:
    """The trainer's fine-tuning hook: grow vocabulary and head, freeze the chosen layers."""
    ft = cfg.finetune
    assert ft is not None
    added = new_characters(vocab, ft, list(cfg.data.train))
    if added:
        vocab = vocab.extend(added)
        grow_head(model, len(vocab))
        log.info("vocabulary: added %s (now %d symbols)", added, len(vocab))
    frozen = freeze(model, ft)
    if frozen:
        log.info("frozen: %s", ", ".join(frozen))
    if ft.freeze_norm_stats and (n := freeze_norm_statistics(model)):
        log.info("batch-norm statistics kept from the base model (%d layers)", n)
    return model, vocab


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def mix_in(ft: FinetuneConfig, n_new: int, seed: int) -> list[Utterance]:
    """``round(ft.mix_ratio * n_new)`` utterances of ``ft.mix_manifests``, drawn with ``seed``
    (without repeats until the pool is used up). Drawn once per run, like the epoch's mix."""
    if not ft.mix_manifests or ft.mix_ratio <= 0:
        return []
    if not np.isfinite(ft.mix_ratio):
        raise ConfigError(f"finetune.mix_ratio must be a finite number >= 0, got {ft.mix_ratio}")
    pool = [u for path in ft.mix_manifests for u in read_manifest(path)]
    want = int(round(ft.mix_ratio * n_new))
    if not pool or not want:
        return []
    rng = np.random.default_rng([int(seed), _MIX_RNG_TAG])
    rounds = -(-want // len(pool))
    order = np.concatenate([rng.permutation(len(pool)) for _ in range(rounds)])[:want]
    return [pool[i] for i in order]


# ---------------------------------------------------------------------------------------------
# The job: evaluate, fine-tune, evaluate again, report
# ---------------------------------------------------------------------------------------------


def resolve_init_from(spec: str | None) -> str:
    """``default`` -> the shipped model's path; a missing value is an error."""
    if not spec:
        raise ConfigError("fine-tuning needs a starting checkpoint: init_from=PATH (or default)")
    if spec == "default":
        from stt.transcribe import default_model_path

        path = default_model_path()
        if not path.is_file():
            raise ConfigError(f"{path}: no default model; give init_from=CHECKPOINT")
        return str(path)
    return spec


def evaluate_groups(
    checkpoint: str, groups: dict[str, list[str]], out_dir: Path, cfg: TrainConfig
) -> dict[str, dict[str, float]]:
    """Greedy WER/CER of ``checkpoint`` on each group of manifests (``{}`` for an empty one)."""
    from stt.evaluate import EvalConfig, run_eval

    device = cfg.trainer.device if cfg.trainer.device in ("auto", "cpu") else "auto"
    results: dict[str, dict[str, float]] = {}
    for group, manifests in groups.items():
        if not manifests:
            continue
        report = run_eval(
            EvalConfig(
                checkpoint=checkpoint,
                manifests=list(manifests),
                out_dir=str(out_dir / group),
                decoders=["greedy"],
                device=device,
                progress=cfg.trainer.progress,
            )
        )
        overall = report["decoders"]["greedy"]["overall"]
        results[group] = {"wer": float(overall["wer"]), "cer": float(overall["cer"])}
    return results


def finetune(cfg: TrainConfig) -> dict:
    """Fine-tune ``cfg.init_from`` on ``cfg.data.train``; returns the before/after report.

    Writes the usual training outputs to ``cfg.run_dir`` plus ``eval_before/``, ``eval_after/``
    and ``finetune_report.json`` / ``.md`` (under DDP, rank 0 evaluates and reports).
    """
    from stt.training import distributed as D
    from stt.training.trainer import train

    if cfg.finetune is None:
        cfg = replace(cfg, finetune=FinetuneConfig())
    cfg.init_from = resolve_init_from(cfg.init_from)
    ft = cfg.finetune
    run_dir = Path(cfg.run_dir)
    groups = {"new": list(ft.eval_new), "original": list(ft.eval_original)}
    is_main = D.dist_info().is_main

    before = evaluate_groups(cfg.init_from, groups, run_dir / "eval_before", cfg) if is_main else {}
    result = train(cfg)
    if not is_main:
        return {}
    best = run_dir / "best.pt"
    checkpoint = best if best.is_file() else run_dir / "last.pt"
    after = evaluate_groups(str(checkpoint), groups, run_dir / "eval_after", cfg)

    from stt.training.checkpoint import load_checkpoint

    start_vocab = load_checkpoint(cfg.init_from)["vocab"]["tokens"]
    end_vocab = load_checkpoint(checkpoint)["vocab"]["tokens"]
    report = {
        "init_from": cfg.init_from,
        "checkpoint": str(checkpoint),
        "added_chars": end_vocab[len(start_vocab) :],
        "frozen": {
            "input_proj": ft.freeze_input_proj,
            "blocks": ft.freeze_blocks,
            "norm_stats": ft.freeze_norm_stats,
        },
        "train": {
            "manifests": list(cfg.data.train),
            "mix_manifests": list(ft.mix_manifests),
            "mix_ratio": ft.mix_ratio,
            "stop_reason": result.stop_reason,
            "epoch": result.epoch,
            "step": result.step,
            "wall_minutes": result.wall_minutes,
        },
        "eval_sets": groups,
        "before": before,
        "after": after,
    }
    (run_dir / "finetune_report.json").write_text(json.dumps(report, indent=2) + "\n")
    (run_dir / "finetune_report.md").write_text(report_markdown(report))
    return report


def report_markdown(report: dict) -> str:
    """The before/after table of a fine-tuning report."""
    lines = [
        "# Fine-tuning report",
        "",
        f"- start: `{report['init_from']}`",
        f"- fine-tuned: `{report['checkpoint']}` ({report['train']['stop_reason']}, "
        f"step {report['train']['step']})",
        f"- characters added: {' '.join(report['added_chars']) or 'none'}",
        "",
        "| test sets | WER before | WER after | CER before | CER after |",
        "|---|---:|---:|---:|---:|",
    ]
    for group, manifests in report["eval_sets"].items():
        if group not in report["after"]:
            continue
        b, a = report["before"].get(group, {}), report["after"][group]
        pct = lambda f, k: f"{100 * f[k]:.2f}%" if k in f else "-"  # noqa: E731
        lines.append(
            f"| {group} ({', '.join(manifests)}) | {pct(b, 'wer')} | {pct(a, 'wer')} | "
            f"{pct(b, 'cer')} | {pct(a, 'cer')} |"
        )
    return "\n".join(lines) + "\n"
