import numpy as np
import pytest
import torch

from stt.features import (
    MFCC,
    FeatureConfig,
    RunningNormState,
    UtteranceStats,
    normalize_per_utterance,
    normalize_running,
)


def test_output_shape_is_batch_coefficients_frames():
    mfcc = MFCC(FeatureConfig(n_mfcc=20))
    feats, lengths = mfcc(torch.randn(3, 16000))
    hop, n_fft = mfcc.config.hop_length, mfcc.config.n_fft
    frames = 1 + (16000 - n_fft) // hop
    assert feats.shape == (3, 20, frames)
    assert lengths.tolist() == [frames] * 3


def test_config_derives_window_hop_and_fft_from_milliseconds():
    c = FeatureConfig(window_ms=25, hop_ms=10)
    assert (c.win_length, c.hop_length, c.n_fft) == (400, 160, 512)


def test_each_utterance_is_normalised_to_zero_mean_unit_variance():
    feats, _ = MFCC()(torch.randn(2, 24000) * torch.tensor([[0.01], [1.0]]))
    assert feats.mean(dim=-1).abs().max() < 1e-4
    assert (feats.std(dim=-1, unbiased=False) - 1).abs().max() < 1e-3


def test_padded_batch_gives_the_same_features_as_each_utterance_alone():
    mfcc = MFCC()
    short, long = torch.randn(7000), torch.randn(16000)
    batch = torch.zeros(2, 16000)
    batch[0, :7000], batch[1] = short, long
    feats, lengths = mfcc(batch, torch.tensor([7000, 16000]))
    alone, alone_len = mfcc(short)
    assert lengths[0] == alone_len[0]
    torch.testing.assert_close(feats[0, :, : lengths[0]], alone[0], atol=1e-4, rtol=1e-4)
    assert feats[0, :, lengths[0] :].abs().max() == 0


def test_audio_shorter_than_one_window_gives_one_frame():
    feats, lengths = MFCC()(torch.randn(100))
    assert feats.shape[-1] == 1 and lengths.tolist() == [1]


def test_normalisation_can_be_switched_off():
    feats, _ = MFCC(FeatureConfig(normalize=False))(torch.randn(1, 16000))
    assert feats.mean().abs() > 0.1


@pytest.mark.parametrize("n_mels", [40, 80])
def test_module_moves_with_the_model_and_is_deterministic(n_mels):
    mfcc = MFCC(FeatureConfig(n_mels=n_mels)).to(torch.float32)
    x = torch.randn(1, 8000)
    torch.testing.assert_close(mfcc(x)[0], mfcc(x)[0])


def test_running_normalisation_uses_only_past_frames():
    mfcc = MFCC(FeatureConfig(normalize="running"))
    x = torch.randn(1, 32000)
    full, _ = mfcc(x)
    head, _ = mfcc(x[:, :16000])  # the first half alone: its frames cannot see the second half
    n = head.shape[-1]
    torch.testing.assert_close(full[..., :n], head, atol=1e-5, rtol=1e-5)
    raw, _ = MFCC(FeatureConfig(normalize="none"))(x)
    t = n - 1  # frame t is normalised by the statistics of frames 0..t
    mean, std = raw[..., : t + 1].mean(-1), raw[..., : t + 1].std(-1, unbiased=False)
    torch.testing.assert_close(full[..., t], (raw[..., t] - mean) / std, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("chunk", [1, 7, 50])
def test_running_state_normalises_chunks_exactly_like_the_whole(chunk):
    raw, _ = MFCC(FeatureConfig(normalize="none"))(torch.randn(2, 24000))
    whole = normalize_running(raw)
    state = RunningNormState()
    parts = [state(raw[..., i : i + chunk]) for i in range(0, raw.shape[-1], chunk)]
    torch.testing.assert_close(torch.cat(parts, dim=-1), whole, atol=1e-6, rtol=1e-6)
    assert state.count == raw.shape[-1]
    # Rewinding over frames already seen (overlapping windows) gives the same result again.
    again = state.rewind(raw.shape[-1] - 30, raw[..., -30:])(raw[..., -30:])
    torch.testing.assert_close(again, whole[..., -30:], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("value", [True, False, "utterance", "running", "none"])
def test_normalize_accepts_modes_and_the_old_booleans(value):
    assert FeatureConfig(normalize=value).normalize_mode in ("utterance", "running", "none")


def test_an_unknown_normalize_mode_is_refused():
    with pytest.raises(ValueError, match="features.normalize"):
        FeatureConfig(normalize="global")


def test_utterance_stats_over_pieces_normalise_as_the_whole_utterance():
    """Long files are normalised from statistics gathered window by window: they must equal
    the whole-utterance normalisation, however the frames are cut."""
    rng = np.random.default_rng(3)
    feats = rng.normal(5.0, 3.0, size=(4, 1000)) * np.linspace(1, 4, 4)[:, None]
    stats = UtteranceStats()
    for piece in np.split(feats, [1, 300, 301, 777], axis=1):
        stats.add(piece)
    mean, std = stats.mean_std()
    x = torch.from_numpy(feats).float()[None]
    whole = normalize_per_utterance(x, torch.ones(1, 1, 1000, dtype=torch.bool))[0]
    torch.testing.assert_close((x[0] - mean) / std, whole, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="no frames"):
        UtteranceStats().mean_std()
