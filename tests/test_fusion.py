"""stt.fusion: the fused inference copy computes what the model computes, only faster."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_fixtures import model_with_norm_statistics

from stt.features import FeatureConfig
from stt.fusion import FusedWaveNetCTC, fuse, fused_for_inference
from stt.inference import infer_log_probs
from stt.model import ModelConfig, WaveNetCTC

ATOL = 1e-4  # the tolerance stt.transcribe's stitching tests hold whole passes to


def model_with_stats(seed: int = 0, **overrides) -> WaveNetCTC:
    """A small eval-mode model whose norms have non-trivial statistics and affine parameters
    (freshly initialised ones would make batch-norm folding look right for free)."""
    config = dict(
        channels=24,
        kernel_size=3,
        dilations=[1, 2, 4],
        stacks=2,
        stride=2,
        head_channels=20,
        dropout=0.1,
    )
    return model_with_norm_statistics(config, 29, seed, **overrides)


def padded_batch(lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise waveforms of ``lengths`` samples, zero-padded into ``(batch, max(lengths))``."""
    gen = torch.Generator().manual_seed(seed)
    waves = torch.zeros(len(lengths), max(lengths))
    for row, n in enumerate(lengths):
        waves[row, :n] = 0.1 * torch.randn(n, generator=gen)
    return waves, torch.tensor(lengths)


def assert_same_valid_frames(a, a_lengths, b, b_lengths) -> None:
    assert a.shape == b.shape
    torch.testing.assert_close(a_lengths, b_lengths)
    for row, n in enumerate(a_lengths.tolist()):
        torch.testing.assert_close(b[row, :n], a[row, :n], atol=ATOL, rtol=0)


ARCHITECTURES = {
    "batchnorm": {},
    "layernorm": dict(norm="layer"),
    "no-norm": dict(norm="none"),
    "stride1": dict(stride=1),
    "stride4-kernel5": dict(stride=4, kernel_size=5),
    "causal": dict(causal=True),
    "causal-running-norm": dict(causal=True, features=FeatureConfig(normalize="running")),
    "no-feature-norm": dict(features=FeatureConfig(normalize=False)),
}


@pytest.mark.parametrize("overrides", ARCHITECTURES.values(), ids=ARCHITECTURES.keys())
def test_fused_model_gives_the_original_log_probs_for_a_padded_batch(overrides):
    model = model_with_stats(**overrides)
    # Lengths: a full row, shorter ones, and one shorter than a single MFCC frame.
    waves, lengths = padded_batch([16000, 9000, 300, 12345])
    with torch.inference_mode():
        want = model(waves, lengths)
        got = fuse(model)(waves, lengths)
    assert_same_valid_frames(*want, *got)


@pytest.mark.parametrize("overrides", [{}, dict(causal=True, norm="layer")], ids=["bn", "ln"])
def test_forward_features_takes_channel_first_features_like_the_original(overrides):
    model = model_with_stats(**overrides)
    feats = torch.randn(3, 40, 70)
    frame_lengths = torch.tensor([70, 41, 9])
    with torch.inference_mode():
        want = model.forward_features(feats, frame_lengths)
        got = fuse(model).forward_features(feats, frame_lengths)
    assert_same_valid_frames(*want, *got)


def test_each_utterance_of_a_packed_batch_gets_what_it_would_get_alone():
    fused = fuse(model_with_stats(dilations=[1, 4, 16]))  # reaches far into its neighbours
    waves, lengths = padded_batch([8000, 3000, 6000])
    with torch.inference_mode():
        batch, out_lengths = fused(waves, lengths)
        for row, n in enumerate(lengths.tolist()):
            alone, _ = fused(waves[row : row + 1, :n])
            k = int(out_lengths[row])
            torch.testing.assert_close(batch[row, :k], alone[0], atol=1e-5, rtol=0)


def test_output_lengths_are_the_originals():
    model = model_with_stats(stride=4)
    samples = torch.tensor([100, 16000, 12345])
    torch.testing.assert_close(fuse(model).output_lengths(samples), model.output_lengths(samples))


def test_infer_log_probs_runs_the_fused_copy_with_the_same_results():
    model = model_with_stats()
    waveforms = [padded_batch([n], seed=n)[0][0].numpy() for n in (16000, 7000, 22000)]
    fused = infer_log_probs(model, waveforms)
    plain = infer_log_probs(model, waveforms, fuse=False)
    for a, b in zip(fused, plain, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=ATOL)


def test_the_fused_copy_is_reused_until_the_weights_change():
    model = model_with_stats()
    first = fused_for_inference(model)
    assert isinstance(first, FusedWaveNetCTC)
    assert fused_for_inference(model) is first
    with torch.no_grad():
        model.head.out.bias += 1.0  # what an optimiser step or load_state_dict does
    second = fused_for_inference(model)
    assert second is not first
    torch.testing.assert_close(second.out_b, first.out_b + 1.0)


def test_a_model_in_training_mode_is_switched_to_eval_and_fused_as_infer_log_probs_always_did():
    model = model_with_stats().train()
    assert isinstance(fused_for_inference(model), FusedWaveNetCTC)
    assert not model.training


def test_a_model_switched_back_to_training_is_fused_again_from_its_new_weights():
    model = model_with_stats()
    first = fused_for_inference(model)
    model.train()
    with torch.no_grad():
        model.head.out.bias -= 1.0
    second = fused_for_inference(model)
    assert second is not first and not model.training
    torch.testing.assert_close(second.out_b, first.out_b - 1.0)


def test_models_it_cannot_fuse_run_as_they_are():
    class Variant(WaveNetCTC):  # a subclass may compute something else
        pass

    variant = Variant(ModelConfig(channels=8, dilations=[1], stacks=1), 29).eval()
    assert fused_for_inference(variant) is variant
    half = model_with_stats().half()
    assert fused_for_inference(half) is half


def test_a_fused_model_is_for_inference_only():
    fused = fuse(model_with_stats())
    assert not fused.training
    with pytest.raises(RuntimeError, match="inference only"):
        fused.train()
    with pytest.raises(ValueError, match="eval-mode"):
        fuse(model_with_stats().train())


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
def test_fusing_leaves_the_original_model_untouched(norm):
    model = model_with_stats(norm=norm)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fuse(model)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)
