import math
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from stt.errors import ConfigError
from stt.features import FeatureConfig
from stt.model import ModelConfig, WaveNetCTC, model_config_from_dict

CONF = Path(__file__).resolve().parent.parent / "conf" / "model"
VOCAB = 6


def tiny(**overrides) -> ModelConfig:
    settings = dict(
        channels=16,
        kernel_size=3,
        dilations=[1, 2],
        stacks=2,
        dropout=0.0,
        head_channels=16,
        features=FeatureConfig(n_mfcc=13, n_mels=24),
    )
    settings.update(overrides)
    return ModelConfig(**settings)


def tiny_model(**overrides) -> WaveNetCTC:
    torch.manual_seed(0)
    return WaveNetCTC(tiny(**overrides), VOCAB)


def trained_a_little(model: WaveNetCTC) -> WaveNetCTC:
    """A few training-mode passes so batch-norm running statistics are not the identity."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(3, 8000), torch.tensor([8000, 5000, 3000]))
    return model.eval()


@pytest.mark.parametrize("stride", [1, 2])
def test_output_shapes_and_lengths_follow_the_stride(stride):
    model = tiny_model(stride=stride).eval()
    lengths = torch.tensor([16000, 9000, 4321])
    log_probs, out_lengths = model(torch.randn(3, 16000), lengths)
    frames = model.features.frame_lengths(lengths)
    expected = [math.ceil(f / stride) for f in frames.tolist()]
    assert out_lengths.tolist() == expected
    assert model.output_lengths(lengths).tolist() == expected
    assert log_probs.shape == (3, expected[0], VOCAB)
    assert log_probs.dtype == torch.float32


def test_log_probs_sum_to_one_per_frame():
    model = tiny_model(stride=2).eval()
    log_probs, _ = model(torch.randn(2, 8000))
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:2]))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_padded_batch_gives_each_utterance_its_own_log_probs(causal, stride, norm):
    model = trained_a_little(tiny_model(causal=causal, stride=stride, norm=norm))
    short, long = torch.randn(5123), torch.randn(12000)
    batch = torch.zeros(2, 12000)
    batch[0, :5123], batch[1] = short, long
    with torch.no_grad():
        log_probs, lengths = model(batch, torch.tensor([5123, 12000]))
        alone, alone_lengths = model(short.unsqueeze(0))
    n = int(lengths[0])
    assert n == int(alone_lengths[0]) and alone.shape[1] == n
    torch.testing.assert_close(log_probs[0, :n], alone[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("stride", [1, 2])
def test_causal_output_ignores_later_frames(stride):
    model = trained_a_little(tiny_model(causal=True, stride=stride, norm="layer"))
    feats = torch.randn(1, 13, 60)
    lengths = torch.tensor([60])
    changed = feats.clone()
    last_kept = 31  # feature frames 0..31 identical, 32.. different
    changed[..., last_kept + 1 :] = torch.randn(1, 13, 60 - last_kept - 1)
    with torch.no_grad():
        before, _ = model.forward_features(feats, lengths)
        after, _ = model.forward_features(changed, lengths)
    # Output frame j stands for the feature chunk [j*stride, (j+1)*stride).
    settled = (last_kept + 1) // stride
    torch.testing.assert_close(before[:, :settled], after[:, :settled])
    assert not torch.allclose(before[:, settled], after[:, settled])


def test_non_causal_output_looks_ahead():
    model = trained_a_little(tiny_model(causal=False))
    feats = torch.randn(1, 13, 60)
    changed = feats.clone()
    changed[..., 40:] += 1.0
    with torch.no_grad():
        before, _ = model.forward_features(feats, torch.tensor([60]))
        after, _ = model.forward_features(changed, torch.tensor([60]))
    assert not torch.allclose(before[:, 38], after[:, 38])


def test_receptive_field_counted_by_hand():
    # 2 stacks of dilations [1, 2] with kernel 3: 1 + 2 * (2*1 + 2*2) = 13 frames at stride 1.
    assert tiny_model(stride=1).receptive_field_frames == 13
    # Stride 2: 13 output frames are 12 strides plus the front kernel of 4 -> 28 feature frames.
    model = tiny_model(stride=2)
    assert model.receptive_field_frames == 28
    # 27 hops of 160 samples plus one 400-sample window at 16 kHz.
    assert model.receptive_field_seconds == pytest.approx((27 * 160 + 400) / 16000)


@pytest.mark.parametrize("causal", [False, True])
def test_receptive_field_is_what_an_impulse_reaches(causal):
    model = trained_a_little(tiny_model(stride=1, causal=causal))
    feats = torch.randn(1, 13, 80)
    changed = feats.clone()
    changed[..., 40] += 5.0
    with torch.no_grad():
        before, _ = model.forward_features(feats, torch.tensor([80]))
        after, _ = model.forward_features(changed, torch.tensor([80]))
    reached = ((before - after).abs().amax(-1) > 0)[0].nonzero().flatten()
    assert len(reached) == model.receptive_field_frames
    assert int(reached.min()) == 40 if causal else int(reached.min()) < 40


def test_describe_names_parameters_receptive_field_and_frame_rate():
    model = tiny_model(stride=2, causal=True)
    line = model.describe()
    assert "\n" not in line
    assert f"{model.num_parameters() / 1e6:.2f} M parameters" in line
    assert f"receptive field 28 frames ({model.receptive_field_seconds:.2f} s)" in line
    assert "20 ms" in line and "causal" in line


def test_spec_augment_is_called_on_features_before_the_encoder():
    model = tiny_model().eval()
    calls = []

    def spec_augment(feats, frame_lengths):
        calls.append((feats.shape, frame_lengths.tolist()))
        return torch.zeros_like(feats)

    lengths = torch.tensor([8000, 6000])
    with torch.no_grad():
        log_probs, out_lengths = model(torch.randn(2, 8000), lengths, spec_augment=spec_augment)
    frames = model.features.frame_lengths(lengths)
    assert calls == [(torch.Size([2, 13, int(frames[0])]), frames.tolist())]
    with torch.no_grad():
        silent, _ = model.forward_features(torch.zeros(2, 13, int(frames[0])), frames)
    torch.testing.assert_close(log_probs, silent)


def test_config_round_trips_through_asdict():
    cfg = ModelConfig(dilations=[1, 3], stride=2, causal=True, features=FeatureConfig(n_mfcc=20))
    assert model_config_from_dict(asdict(cfg)) == cfg
    assert model_config_from_dict(OmegaConf.create(asdict(cfg))) == cfg


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match="chanels"):
        model_config_from_dict({"chanels": 3})
    with pytest.raises(ConfigError, match="norm"):
        ModelConfig(norm="group")
    with pytest.raises(ConfigError, match="vocab_size"):
        WaveNetCTC(tiny(), 1)


def test_tiny_model_overfits_one_utterance_with_ctc():
    torch.manual_seed(0)
    model = WaveNetCTC(tiny(stride=2, channels=32, head_channels=32), VOCAB).train()
    waveform = torch.randn(1, 8000)
    targets = torch.tensor([[1, 2, 3, 2, 4]])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        log_probs, out_lengths = model(waveform)
        loss = torch.nn.functional.ctc_loss(
            log_probs.transpose(0, 1), targets, out_lengths, torch.tensor([5])
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name", ["base", "small", "causal"])
def test_shipped_config_builds_a_model(name):
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(CONF / f"{name}.yaml"))
    config = OmegaConf.to_object(cfg)
    assert isinstance(config.features, FeatureConfig)
    model = WaveNetCTC(config, 29)
    print(name, model.describe())
    assert "M parameters" in model.describe()
    log_probs, lengths = model.eval()(torch.randn(1, 4000))
    assert log_probs.shape == (1, int(lengths[0]), 29)


def test_base_config_is_bigger_than_small():
    def params(name):
        cfg = OmegaConf.merge(
            OmegaConf.structured(ModelConfig), OmegaConf.load(CONF / f"{name}.yaml")
        )
        return WaveNetCTC(OmegaConf.to_object(cfg), 29).num_parameters()

    assert params("base") > params("small")
