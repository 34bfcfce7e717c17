"""The fast per-frame loop of the beam search (stt.beam_search) against pyctcdecode's own loop:
the same beams, scores and word frames, exactly, on matrices that make beams merge, the LM
score, hotwords boost and the pruning cut."""

import numpy as np
import pytest
from pyctcdecode.decoder import BeamSearchDecoderCTC
from pyctcdecode.language_model import HotwordScorer

from stt.beam_search import beam_search_class, fast_search
from stt.decoding import DecoderConfig, _build_ctc_decoder
from stt.text import Vocabulary
from tests.test_decoding import ARPA  # a bigram LM of "cat sat on the mat"

VOCAB = Vocabulary.default()
WORDS = ["cat", "sat", "on", "the", "mat", "cab", "sap", "them"]


def spoken(seed: int, noise: float) -> np.ndarray:
    """Log-probs of a few words, some in the LM and some not, with ``noise`` spread over other
    labels: the larger it is, the more labels pass ``token_min_logp`` and the more beams merge."""
    rng = np.random.default_rng(seed)
    path = [VOCAB.blank_id]
    for word in rng.choice(WORDS, size=5):
        for char in word:
            path += [VOCAB.tokens.index(char)] * int(rng.integers(1, 4))
            path += [VOCAB.blank_id] * int(rng.integers(0, 3))
        path += [VOCAB.tokens.index(" ")] + [VOCAB.blank_id] * int(rng.integers(0, 3))
    logits = rng.normal(scale=noise, size=(len(path), len(VOCAB)))
    logits[np.arange(len(path)), path] += rng.uniform(1, 6, size=len(path))
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


@pytest.fixture(scope="module")
def decoder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm")
    (folder / "lm.arpa").write_text(ARPA)
    (folder / "unigrams.txt").write_text("\n".join(WORDS[:5]) + "\n")
    config = DecoderConfig(kind="beam", lm=str(folder / "lm.arpa"),
                           unigrams=str(folder / "unigrams.txt"), alpha=0.7, beta=1.5)  # fmt: skip
    ctc = _build_ctc_decoder(VOCAB, config)
    yield ctc
    ctc.cleanup()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hotwords", [[], ["sap"]])
@pytest.mark.parametrize(
    ("width", "token_min_logp", "prune"), [(32, -4.0, -10.0), (8, -6.0, -10.0), (64, -3.0, -5.0)]
)
def test_the_fast_loop_returns_pyctcdecodes_beams_exactly(
    decoder, dtype, hotwords, width, token_min_logp, prune
):
    settings = {"beam_width": width, "beam_prune_logp": prune, "token_min_logp": token_min_logp,
                "prune_history": False, "lm_start_state": None}  # fmt: skip
    merged = 0
    for seed in range(4):
        for noise in (0.5, 2.0):
            logits = spoken(seed, noise).astype(dtype)
            scorer = HotwordScorer.build_scorer(hotwords, weight=10.0)
            expected = BeamSearchDecoderCTC._decode_logits(
                decoder, logits, hotword_scorer=scorer, **settings
            )
            assert fast_search(decoder, logits, hotword_scorer=scorer, **settings) == expected
            # through the class: without hotwords, partial-word scores kept across searches
            assert decoder._decode_logits(logits, hotword_scorer=scorer, **settings) == expected
            merged += int((logits >= token_min_logp).sum(axis=1).max() > 1)
    assert merged  # some frames had several candidates, so beams branched and merged


def test_a_search_through_the_decoder_class_takes_the_fast_loop(decoder, monkeypatch):
    """decode_beams (what stt.decoding calls) goes through fast_search for an LM search, and
    through pyctcdecode's own loop when history pruning is asked for."""
    import stt.beam_search as module

    calls = []
    real = module.fast_search
    monkeypatch.setattr(module, "fast_search", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert isinstance(decoder, beam_search_class())
    logits = spoken(0, 1.0).astype(np.float32)
    fast = decoder.decode_beams(logits, beam_width=16)
    assert calls == [1]
    pruned = decoder.decode_beams(logits, beam_width=16, prune_history=True)
    assert calls == [1] and pruned[0][0] == fast[0][0]
    with module.pyctcdecode_loop():  # scripts/bench_decode.py --reference-loop's switch
        assert decoder.decode_beams(logits, beam_width=16) == fast and calls == [1]
    decoder.decode_beams(logits, beam_width=16)
    assert calls == [1, 1]  # back on afterwards
