"""Grow a trained model into a wider or deeper one that computes exactly the same function.

A bigger WaveNet trained from scratch needs hours before it catches up with the model it is
meant to replace; one grown from that model starts where it stands and only has to learn what
its extra capacity adds (Chen et al., 2016, "Net2Net", arXiv:1511.05641, with zero instead of
split weights). ``scripts/model_search.py`` compares sizes this way under equal CPU budgets.

* **Wider** (``channels``): every old weight is copied; the new channels get their fresh random
  initialisation *except* the weights from a new channel into an old one, which are zero. The
  old channels therefore see nothing new at the start, while the new ones carry signal, so the
  zero weights get gradients and grow. Per-channel norms ("batch", "none") keep their
  statistics; "layer" normalises across channels, so a wider layer-norm model cannot compute
  the same function and is refused.
* **Deeper** (``stacks``): the new stacks go after the old blocks. The old last block gains a
  residual convolution (zero, so it passes its input on), the new blocks' skip convolutions start
  at zero (so the skip sum is unchanged), and the old skip convolutions are rescaled for the
  ``1 / sqrt(blocks)`` skip scale of the deeper model.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from stt.checkpoint import model_state, read_model, save_checkpoint
from stt.errors import ConfigError
from stt.model import WaveNetCTC


def grow(
    model: WaveNetCTC,
    channels: int | None = None,
    stacks: int | None = None,
    dropout: float | None = None,
) -> WaveNetCTC:
    """A copy of ``model`` with ``channels`` residual channels and ``stacks`` dilation stacks
    (None: unchanged), giving the same log-probs in eval mode; the copy is in eval mode.

    ``dropout`` (None: unchanged) sets the copy's training-time dropout: it changes no weight,
    but ``init_from`` takes the model's configuration from the checkpoint, so this is where a
    continued run gets a different rate (the shipped default's third anneal ran without)."""
    old = model.config
    channels = old.channels if channels is None else channels
    stacks = old.stacks if stacks is None else stacks
    dropout = old.dropout if dropout is None else dropout
    if channels < old.channels or stacks < old.stacks:
        raise ConfigError(
            f"growing only adds: channels {old.channels} -> {channels}, "
            f"stacks {old.stacks} -> {stacks}"
        )
    if channels > old.channels and old.norm == "layer":
        raise ConfigError(
            "a layer-norm model cannot be widened exactly (it normalises across channels)"
        )
    grown = WaveNetCTC(replace(old, channels=channels, stacks=stacks, dropout=dropout),
                       model.vocab_size)  # fmt: skip
    _copy_widened(model, grown)
    if stacks > old.stacks:
        _start_new_blocks_silent(grown, len(model.blocks))
    return grown.eval()


def _copy_widened(old: WaveNetCTC, new: WaveNetCTC) -> None:
    """Copy every tensor of ``old`` into the matching one of ``new`` (old channels first)."""
    c_old, c_new = old.config.channels, new.config.channels
    maps = {
        c_old: torch.arange(c_old),  # residual, skip and gate-output channels
        2 * c_old: torch.cat([torch.arange(c_old), c_new + torch.arange(c_old)]),  # filter | gate
    }
    new_state = new.state_dict()
    with torch.no_grad():
        for name, value in old.state_dict().items():
            target = new_state[name]
            if target.shape == value.shape:
                target.copy_(value)
                continue
            index = [
                maps[size] if size != target.shape[dim] else torch.arange(size)
                for dim, size in enumerate(value.shape[:2])
            ]
            _embed(target, value, index)


def _embed(target: Tensor, value: Tensor, index: list[Tensor]) -> None:
    """``target[index] = value``; for a weight, the rest of an old output's row (its inputs from
    new channels) becomes zero so that the output is what it was."""
    if value.dim() == 1:
        target[index[0]] = value
        return
    target[index[0]] = 0
    target[index[0][:, None], index[1][None, :]] = value


def _start_new_blocks_silent(model: WaveNetCTC, old_blocks: int) -> None:
    """Blocks ``old_blocks`` on add nothing to the skip sum yet; the old ones keep their share."""
    rescale = math.sqrt(len(model.blocks) / old_blocks)
    with torch.no_grad():
        last_old = model.blocks[old_blocks - 1]
        last_old.res.weight.zero_()
        last_old.res.bias.zero_()
        for i, block in enumerate(model.blocks):
            if i < old_blocks:
                block.skip.weight.mul_(rescale)
                block.skip.bias.mul_(rescale)
            else:
                block.skip.weight.zero_()
                block.skip.bias.zero_()


def grown_description(model: WaveNetCTC, original: WaveNetCTC) -> str:
    """One line for logs and reports: what was grown into what."""
    a, b = original.config, model.config
    return (
        f"grown from {a.stacks * len(a.dilations)} blocks x {a.channels} channels "
        f"({original.num_parameters() / 1e6:.2f} M) to {b.stacks * len(b.dilations)} blocks x "
        f"{b.channels} channels ({model.num_parameters() / 1e6:.2f} M)"
    )


def grow_checkpoint(
    source: Path,
    target: Path,
    channels: int | None,
    stacks: int | None,
    dropout: float | None = None,
) -> str:
    """``source``'s model grown (:func:`grow`) and saved to ``target`` as a model checkpoint
    (``init_from`` material, fp32); returns :func:`grown_description`.

    Raises:
        CheckpointError: if ``source`` is missing or not an stt checkpoint.
        ConfigError: if the shape would shrink (see :func:`grow`).
    """
    model, vocab = read_model(source)
    model = model.float()
    grown = grow(model, channels=channels, stacks=stacks, dropout=dropout)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(target, model_state(grown, vocab))
    return grown_description(grown, model)
