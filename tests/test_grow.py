"""stt.training.grow: a grown model starts as the same function, and every weight of it learns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stt.checkpoint import model_state, read_model, save_checkpoint
from stt.errors import ConfigError
from stt.text import Vocabulary
from stt.training.grow import grow, grown_description
from tests.model_fixtures import model_with_norm_statistics

ROOT = Path(__file__).resolve().parent.parent
SMALL = dict(channels=8, kernel_size=3, dilations=[1, 2], stacks=2, stride=2, head_channels=16)


def _padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    return torch.randn(2, 8000), torch.tensor([8000, 5000])


@pytest.mark.parametrize(("channels", "stacks"), [(12, None), (None, 4), (16, 3)])
@pytest.mark.parametrize("norm", ["batch", "none"])
def test_grown_model_gives_the_same_log_probs(channels, stacks, norm):
    model = model_with_norm_statistics(SMALL, vocab_size=29, norm=norm)
    grown = grow(model, channels=channels, stacks=stacks)
    assert grown.config.channels == (channels or 8)
    assert len(grown.blocks) == 2 * (stacks or 2)
    assert grown.num_parameters() > model.num_parameters()
    waveform, lengths = _padded_batch()
    with torch.no_grad():
        expected, expected_lengths = model(waveform, lengths)
        got, got_lengths = grown(waveform, lengths)
    assert torch.equal(got_lengths, expected_lengths)
    for b, n in enumerate(expected_lengths.tolist()):
        torch.testing.assert_close(got[b, :n], expected[b, :n], atol=2e-6, rtol=0)


def test_every_weight_of_a_grown_model_learns_within_two_steps():
    grown = grow(model_with_norm_statistics(SMALL, vocab_size=29), channels=12, stacks=3).train()
    optimizer = torch.optim.Adam(grown.parameters(), lr=1e-2)  # moves any non-zero gradient
    waveform, lengths = _padded_batch()
    before = {name: p.detach().clone() for name, p in grown.named_parameters()}
    for _ in range(2):  # zero skips of new blocks pass gradients on once they have moved
        optimizer.zero_grad()
        log_probs, _ = grown(waveform, lengths)
        (log_probs[..., 1:].logsumexp(-1).mean()).backward()
        optimizer.step()
    frozen = [n for n, p in grown.named_parameters() if torch.equal(p.detach(), before[n])]
    assert frozen == []


def test_growing_refuses_to_shrink_or_to_widen_a_layer_norm():
    model = model_with_norm_statistics(SMALL, vocab_size=29)
    with pytest.raises(ConfigError, match="only adds"):
        grow(model, channels=4)
    layer = model_with_norm_statistics(SMALL, vocab_size=29, norm="layer", causal=True)
    with pytest.raises(ConfigError, match="layer-norm"):
        grow(layer, channels=12)
    deeper = grow(layer, stacks=3)  # deeper is exact for any norm
    assert len(deeper.blocks) == 6


def test_description_names_both_sizes():
    model = model_with_norm_statistics(SMALL, vocab_size=29)
    line = grown_description(grow(model, channels=12, stacks=3), model)
    assert "4 blocks x 8 channels" in line and "6 blocks x 12 channels" in line


SCRIPT = [sys.executable, str(ROOT / "scripts" / "grow_model.py")]


def _grow_with_script(tmp_path: Path, *args: str):
    """A small model saved as ``small.pt`` and scripts/grow_model.py run on it into ``out.pt``:
    the model and the finished process."""
    model = model_with_norm_statistics(SMALL, vocab_size=len(Vocabulary.default()))
    save_checkpoint(tmp_path / "small.pt", model_state(model, Vocabulary.default()))
    done = subprocess.run([*SCRIPT, str(tmp_path / "small.pt"), str(tmp_path / "out.pt"), *args],
                          capture_output=True, text=True)  # fmt: skip
    return model, done


def test_the_grow_script_writes_a_checkpoint_that_trains_on_from_the_same_function(tmp_path):
    """scripts/grow_model.py (the recipe's grow stage): the grown checkpoint loads as init_from
    material with the deeper shape and the same log-probs; a bad source is one error line."""
    model, done = _grow_with_script(tmp_path, "--stacks", "3")
    assert done.returncode == 0, done.stderr
    assert "4 blocks x 8 channels" in done.stdout and "6 blocks x 8 channels" in done.stdout
    grown, vocab = read_model(tmp_path / "out.pt")
    assert len(grown.blocks) == 6 and vocab.tokens == Vocabulary.default().tokens
    waveform, lengths = _padded_batch()
    with torch.no_grad():
        expected, _ = model(waveform, lengths)
        got, _ = grown.eval()(waveform, lengths)
    torch.testing.assert_close(got[0], expected[0], atol=2e-6, rtol=0)

    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    bad = subprocess.run([*SCRIPT, str(tmp_path / "junk.pt"), str(tmp_path / "bad.pt")],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("stt: error: ") and "junk.pt" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad.pt").exists()


def test_a_new_dropout_rate_keeps_every_weight_and_the_eval_function():
    """The recipe's way to continue a run at another dropout rate (init_from takes the model's
    configuration from the checkpoint): same shape and weights, the new rate in the modules."""
    model = model_with_norm_statistics(SMALL, vocab_size=29)
    copy = grow(model, dropout=0.0)
    assert copy.config.dropout == 0.0 and model.config.dropout == 0.1
    assert all(m.p == 0.0 for m in copy.modules() if isinstance(m, torch.nn.Dropout))
    state, copied = model.state_dict(), copy.state_dict()
    assert state.keys() == copied.keys()
    assert all(torch.equal(state[k], copied[k]) for k in state)
    with pytest.raises(ConfigError, match="dropout"):
        grow(model, dropout=1.5)


def test_the_grow_script_sets_dropout_without_growing(tmp_path):
    model, done = _grow_with_script(tmp_path, "--dropout", "0")
    assert done.returncode == 0, done.stderr
    start, _ = read_model(tmp_path / "out.pt")
    assert start.config.dropout == 0.0 and len(start.blocks) == len(model.blocks)
