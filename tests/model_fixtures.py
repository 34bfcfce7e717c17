"""Small models for tests of the inference copies (fusion, export, streaming): the copies fold
norms into convolutions, so the norms must have non-trivial statistics and affine parameters
(freshly initialised ones would make a wrong fold look right for free)."""

from __future__ import annotations

import torch

from stt.model import MaskedBatchNorm1d, ModelConfig, WaveNetCTC


def model_with_norm_statistics(
    config: dict, vocab_size: int, seed: int = 0, **overrides
) -> WaveNetCTC:
    """An eval-mode ``WaveNetCTC`` of ``config`` (``overrides`` on top) with randomised running
    statistics and norm weights, seeded."""
    torch.manual_seed(seed)
    model = WaveNetCTC(ModelConfig(**{**config, **overrides}), vocab_size)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, MaskedBatchNorm1d):
                module.running_mean.normal_(0.0, 0.5)
                module.running_var.uniform_(0.3, 3.0)
            if isinstance(module, MaskedBatchNorm1d | torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.3)
    return model.eval()
