import pytest
import torch

from stt.features import MFCC, FeatureConfig


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
