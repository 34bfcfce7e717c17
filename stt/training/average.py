"""Average the weights of checkpoints of one model: a cheap step that beat more training.

Two runs of the same lineage (a warm restart and the model it started from) sit in one basin
of the loss; the mean of their weights often lies lower in it than either end (stochastic
weight averaging, Izmailov et al., 2018, arXiv:1803.05407; "model soups", Wortsman et al.,
2022, arXiv:2203.05482). The shipped default's fifth step was such a mean: the fourth anneal's
model and a 4,000-step warm restart from it, half and half, better on five of six dev splits
than either (``MODEL_CARD.md``). Batch-norm running statistics are averaged like the weights;
integer buffers (the batch counters) and the config (its dropout rate may differ) come from the
last checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from stt.checkpoint import model_state, read_model, save_checkpoint
from stt.errors import ConfigError


def average_checkpoints(
    sources: Sequence[Path], target: Path, weights: Sequence[float] | None = None
) -> str:
    """Save the weighted mean of ``sources``' weights (each checkpoint's share in ``weights``,
    normalised to sum 1; equal shares when None) to ``target`` as a model checkpoint, fp32;
    returns a one-line description.

    Raises:
        CheckpointError: a source is missing or not an stt checkpoint.
        ConfigError: fewer than two sources, weights that do not fit them, or checkpoints of
            different model shapes or vocabularies (their weights cannot be averaged).
    """
    if len(sources) < 2:
        raise ConfigError("averaging needs at least two checkpoints")
    weights = [1.0] * len(sources) if weights is None else [float(w) for w in weights]
    if len(weights) != len(sources) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(
            f"--weights: {len(sources)} non-negative numbers with a positive sum, one per "
            f"checkpoint (got {', '.join(f'{w:g}' for w in weights)})"
        )
    shares = [w / sum(weights) for w in weights]
    models = [read_model(path) for path in sources]
    first, vocab = models[0]
    for path, (model, other_vocab) in zip(sources[1:], models[1:], strict=True):
        if _shape(model.config) != _shape(first.config) or other_vocab != vocab:
            raise ConfigError(
                f"{path}: not the same model as {sources[0]} (shape or vocabulary differ), "
                "so their weights cannot be averaged"
            )
    states = [model.float().state_dict() for model, _ in models]
    mean = {}
    for name, last in states[-1].items():
        if last.is_floating_point():
            mean[name] = sum(
                share * state[name] for share, state in zip(shares, states, strict=True)
            )
        else:
            mean[name] = last
    average = models[-1][0].float()  # the last checkpoint's config, dropout included
    average.load_state_dict(mean)
    target.parent.mkdir(parents=True, exist_ok=True)
    state = model_state(average, vocab)
    # What the mean is, where a training run records its epoch and step (package_model.sh
    # ships this summary with the weights).
    state["trained"] = {
        "averaged": [
            {"checkpoint": str(p), "share": round(s, 6)}
            for s, p in zip(shares, sources, strict=True)
        ]
    }
    save_checkpoint(target, state)
    parts = " + ".join(f"{s:.2g} x {p}" for s, p in zip(shares, sources, strict=True))
    return f"{parts} ({average.num_parameters() / 1e6:.2f} M parameters)"


def _shape(config):
    """What makes two models' weights averageable: the config less its dropout rate, which
    only training uses (a warm restart may add dropout to a model trained without)."""
    return replace(config, dropout=0.0)
