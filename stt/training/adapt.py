"""Model surgery for fine-tuning: what the trainer does to a trained model before it trains on.

The vocabulary comes from the checkpoint and grows by the new transcripts' characters (the CTC
head grows rows to match, old rows untouched), early layers are frozen (optionally batch-norm
statistics too), and some original training data is mixed in against forgetting. Kept apart from
:mod:`stt.training.finetune` (the ``stt finetune`` job, which runs the trainer) so the trainer
does not import the job that imports it.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from stt.data.manifest import Utterance, read_manifest
from stt.errors import ConfigError
from stt.model import ChannelLayerNorm, MaskedBatchNorm1d, WaveNetCTC
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


NORM_LAYERS = (MaskedBatchNorm1d, ChannelLayerNorm)


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
    frozen = list(modules)
    if ft.only_norms:  # the smallest adaptation: every norm's scale and shift, nothing else
        norms = {id(p) for m in model.modules() if isinstance(m, NORM_LAYERS)
                 for p in m.parameters()}  # fmt: skip
        for p in model.parameters():
            if id(p) not in norms:
                p.requires_grad_(False)
        frozen.append("every weight but the norms' scales and shifts")
    return frozen


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
