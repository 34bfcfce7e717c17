"""Greedy and beam-search decoding: text, word timestamps, confidences, LM, hotwords, batching
(stt.decoding). Log-probabilities are built by hand, one frame per character of a spelling."""

import gc
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from pyctcdecode import build_ctcdecoder

from stt.decoding import (
    BeamSearchDecoder,
    DecoderConfig,
    GreedyDecoder,
    build_decoder,
    load_tuned_decoder,
    pyctcdecode_labels,
    resolve_decoder,
    save_tuned_decoder,
)
from stt.errors import ConfigError
from stt.text import Vocabulary

VOCAB = Vocabulary.default()
FS = 0.02  # seconds per output frame (50 frames/s)

# "_" is the blank; every character is one frame.
CAT_SAT = "_cc_att_ _sa_t__"  # cat: frames 1-6, sat: frames 10-13


def frames(*spec, peak: float = 0.95) -> np.ndarray:
    """``(frames, vocab)`` log-probs. Each argument is one frame: a label (``"_"`` = blank) that
    gets ``peak``, a string of several frames, or a dict ``{label: probability}``; the rest of
    each frame's probability is spread evenly over the other labels."""
    rows = []
    for item in spec:
        for one in [item] if isinstance(item, dict) else list(item):
            wanted = one if isinstance(one, dict) else {one: peak}
            ids = {
                VOCAB.blank_id if c == "_" else VOCAB.tokens.index(c): p for c, p in wanted.items()
            }
            rest = (1.0 - sum(ids.values())) / (len(VOCAB) - len(ids))
            row = np.full(len(VOCAB), rest)
            for i, p in ids.items():
                row[i] = p
            rows.append(row)
    return np.log(np.array(rows, dtype=np.float32))


def ctc_like(seed: int, n_frames: int = 300) -> np.ndarray:
    """A random but peaky matrix, like a trained model's: mostly blank, held characters."""
    rng = np.random.default_rng(seed)
    path = []
    while len(path) < n_frames:
        path += [int(rng.integers(1, len(VOCAB)))] * int(rng.integers(1, 3))
        path += [VOCAB.blank_id] * int(rng.integers(0, 4))
    logits = rng.normal(size=(n_frames, len(VOCAB)))
    logits[np.arange(n_frames), path[:n_frames]] += rng.uniform(3, 10, size=n_frames)
    logits -= logits.max(axis=1, keepdims=True)
    return (logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))).astype(np.float32)


def beam(**kw) -> BeamSearchDecoder:
    return BeamSearchDecoder(VOCAB, DecoderConfig(kind="beam", **kw), workers=1)


def spans(result) -> list[tuple[str, float, float]]:
    return [(w.word, w.start, w.end) for w in result.words]


# --- greedy ------------------------------------------------------------------------------------


def test_greedy_merges_repeats_and_drops_blanks():
    result = GreedyDecoder(VOCAB).decode(frames("_hh_e_ll_l_oo_ _", "w_oo_rr_l_d"), FS)
    assert result.text == "hello world"
    assert [w.word for w in result.words] == ["hello", "world"]


def test_greedy_texts_of_a_padded_batch_match_decode_of_each_valid_part():
    """The trainer's batched text-only form is the same decoder: padding frames are ignored."""
    matrices = [ctc_like(seed, 120) for seed in range(5)]
    lengths = torch.tensor([120, 97, 60, 1, 0])
    texts = GreedyDecoder(VOCAB).texts(torch.from_numpy(np.stack(matrices)), lengths)
    expected = [
        GreedyDecoder(VOCAB).decode(m[:n], FS).text
        for m, n in zip(matrices, lengths.tolist(), strict=True)
    ]
    assert texts == expected
    assert texts[-1] == ""
    assert GreedyDecoder(VOCAB).texts(
        torch.from_numpy(frames("_hh_e_ll_l_oo_ _", "w_oo_rr_l_d"))[None]
    ) == ["hello world"]


def test_greedy_n_best_is_its_text_scored_by_the_best_path_log_probs():
    lp = frames(CAT_SAT)
    result = GreedyDecoder(VOCAB).decode(lp, FS)
    assert len(result.n_best) == 1
    assert result.n_best[0][0] == "cat sat"
    assert result.n_best[0][1] == pytest.approx(float(lp.max(axis=1).sum()), abs=1e-4)


def test_leading_trailing_and_repeated_spaces_make_no_empty_words():
    result = GreedyDecoder(VOCAB).decode(frames("  _a_  _ _b_ "), FS)
    assert result.text == "a b"
    assert [w.word for w in result.words] == ["a", "b"]


# --- shared definitions: timestamps and confidence ----------------------------------------------


@pytest.mark.parametrize("kind", ["greedy", "beam"])
def test_word_times_run_from_first_to_last_frame_of_the_words_characters(kind):
    with build_decoder(VOCAB, DecoderConfig(kind=kind), workers=1) as decoder:
        result = decoder.decode(frames(CAT_SAT), FS)
    assert result.text == "cat sat"
    assert spans(result) == [("cat", 1 * FS, 7 * FS), ("sat", 10 * FS, 14 * FS)]


def test_beam_and_greedy_agree_on_a_clear_path():
    lp = frames("_th_e_ _qq_uu_i_cc_kk_ _bb_r_oo_ww_n_ _f_o_x_")
    greedy = GreedyDecoder(VOCAB).decode(lp, FS)
    with beam() as decoder:
        result = decoder.decode(lp, FS)
    assert result.text == greedy.text == "the quick brown fox"
    assert result.words == greedy.words


@pytest.mark.parametrize("kind", ["greedy", "beam"])
def test_word_times_are_ordered_and_within_the_audio(kind):
    with build_decoder(VOCAB, DecoderConfig(kind=kind), workers=1) as decoder:
        for seed in range(4):
            lp = ctc_like(seed)
            words = decoder.decode(lp, FS).words
            assert words
            bounds = [t for w in words for t in (w.start, w.end)]
            assert bounds == sorted(bounds)
            assert bounds[0] >= 0 and bounds[-1] <= len(lp) * FS + 1e-9
            assert all(w.end > w.start and 0 <= w.confidence <= 1 for w in words)


@pytest.mark.parametrize("kind", ["greedy", "beam"])
def test_an_ambiguous_word_gets_lower_confidence_than_a_clean_one(kind):
    lp = frames("_c_a_t_ _", {"s": 0.5, "z": 0.45}, "_", {"a": 0.55, "e": 0.4}, "_t_")
    with build_decoder(VOCAB, DecoderConfig(kind=kind), workers=1) as decoder:
        cat, sat = decoder.decode(lp, FS).words
    assert (cat.word, sat.word) == ("cat", "sat")
    # The mean of its non-blank frames' top posteriors.
    assert cat.confidence == pytest.approx(0.95, abs=1e-4)
    assert sat.confidence == pytest.approx((0.5 + 0.55 + 0.95) / 3, abs=1e-4)


# A tiny bigram LM (tab-separated, as pyctcdecode reads unigrams from it) that knows
# "cat sat on the mat".
ARPA = """\
\\data\\
ngram 1=8
ngram 2=6

\\1-grams:
-1.0\t<unk>\t0
-99\t<s>\t-0.3
-1.0\t</s>\t0
-0.9\tcat\t-0.3
-0.9\tsat\t-0.3
-0.9\ton\t-0.3
-0.7\tthe\t-0.3
-0.9\tmat\t-0.3

\\2-grams:
-0.1\t<s> cat
-0.1\tcat sat
-0.1\tsat on
-0.1\ton the
-0.2\tthe mat
-0.1\tmat </s>

\\end\\
"""


# --- beam search ---------------------------------------------------------------------------------

# The last letter of "mab" is only slightly more likely than that of "mat".
CAT_SAT_ON_THE_MAB = ("_c_a_t_ _s_a_t_ _o_n_ _t_h_e_ _m_a_", {"b": 0.55, "t": 0.4}, "_")


def test_beam_n_best_lists_distinct_hypotheses_best_first():
    lp = frames("_c_a_", {"b": 0.5, "t": 0.3, "p": 0.15}, "_")
    with beam(n_best=3) as decoder:
        result = decoder.decode(lp, FS)
    texts = [t for t, _ in result.n_best]
    scores = [s for _, s in result.n_best]
    assert texts == ["cab", "cat", "cap"]
    assert texts[0] == result.text
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("with_lm", [False, True])
def test_beam_results_equal_a_search_over_every_frame(with_lm, tmp_path):
    """The decoder skips frames that cannot change the search; results must not change."""
    lm = None
    if with_lm:
        lm = str(tmp_path / "lm.arpa")
        Path(lm).write_text(ARPA)
    reference = build_ctcdecoder(pyctcdecode_labels(VOCAB), kenlm_model_path=lm, beta=1.0)
    with beam(n_best=4, lm=lm) as decoder:
        for seed in range(3):
            lp = ctc_like(seed)
            result = decoder.decode(lp, FS)
            beams = reference.decode_beams(
                lp, beam_width=32, token_min_logp=decoder.config.token_min_logp
            )
            assert [t for t, _ in result.n_best] == [b[0] for b in beams[:4]]
            assert [s for _, s in result.n_best] == pytest.approx([b[4] for b in beams[:4]])
            assert [(w.word, round(w.start / FS), round(w.end / FS)) for w in result.words] == [
                (word, start, end) for word, (start, end) in beams[0][2]
            ]
    reference.cleanup()


def test_decoders_of_one_lm_share_it_and_keep_their_own_weights(tmp_path):
    """A server's two decoders load the LM's unigram trie once; each still searches with its
    own alpha and beta, exactly as a decoder built alone."""
    lm = str(tmp_path / "lm.arpa")
    Path(lm).write_text(ARPA)
    with beam(lm=lm, alpha=0.5, beta=1.0) as one, beam(lm=lm, alpha=1.0, beta=0.5) as two:
        first, second = one._ctc()._language_model, two._ctc()._language_model
        assert first._char_trie is second._char_trie
        assert (first.alpha, second.alpha, first.beta, second.beta) == (0.5, 1.0, 1.0, 0.5)
        for decoder, alpha, beta in ((one, 0.5, 1.0), (two, 1.0, 0.5)):
            alone = build_ctcdecoder(pyctcdecode_labels(VOCAB), kenlm_model_path=lm,
                                     alpha=alpha, beta=beta)  # fmt: skip
            for seed in range(3):
                lp = ctc_like(seed)
                expected = alone.decode_beams(
                    lp, beam_width=32, token_min_logp=decoder.config.token_min_logp
                )[0][0]
                assert decoder.decode(lp, FS).text == " ".join(expected.split())
            alone.cleanup()


def test_unigram_prefixes_answer_as_pyctcdecodes_trie_does(tmp_path):
    """The LM's partial-word check is a prefix set; it says what pygtrie's CharTrie says."""
    import pygtrie

    from stt.decoding import UnigramPrefixes

    words = ["cat", "cats", "catalogue", "dog", "a", "zebra's"]
    prefixes, trie = UnigramPrefixes(words), pygtrie.CharTrie.fromkeys(words)
    keys = ["", "c", "ca", "cat", "cata", "catx", "d", "do", "dogs", "z", "zebra'", "zebra's",
            "zebra'ss", "b", "a", "aa", "'"]  # fmt: skip
    assert [prefixes.has_node(k) > 0 for k in keys] == [trie.has_node(k) > 0 for k in keys]
    lm = str(tmp_path / "lm.arpa")
    Path(lm).write_text(ARPA)
    with beam(lm=lm) as decoder:
        assert isinstance(decoder._ctc()._language_model._char_trie, UnigramPrefixes)


def test_hotwords_turn_an_ambiguous_word_into_the_hotword():
    lp = frames("_c_a_", {"p": 0.5, "t": 0.4}, "_ _s_a_t_")
    with beam() as plain, beam(hotwords=["Cat"]) as biased:
        assert plain.decode(lp, FS).text == "cap sat"
        assert biased.decode(lp, FS).text == "cat sat"


def test_empty_input_decodes_to_nothing():
    empty = np.zeros((0, len(VOCAB)), dtype=np.float32)
    with beam() as decoder:
        assert decoder.decode(empty, FS).text == ""
    assert GreedyDecoder(VOCAB).decode(empty, FS).words == []


def test_log_probs_for_another_vocabulary_are_rejected():
    with pytest.raises(ValueError, match=r"shape \(frames, 29\)"):
        GreedyDecoder(VOCAB).decode(np.zeros((5, 30), dtype=np.float32), FS)


# --- language model ------------------------------------------------------------------------------


@pytest.fixture
def lm(tmp_path: Path) -> tuple[str, str]:
    """A tiny bigram LM that knows "cat sat on the mat", and its unigram list."""
    (tmp_path / "lm.arpa").write_text(ARPA)
    (tmp_path / "lm.unigrams").write_text("cat\nsat\non\nthe\nmat\n")
    return str(tmp_path / "lm.arpa"), str(tmp_path / "lm.unigrams")


def test_the_language_model_fixes_an_acoustically_ambiguous_spelling(lm):
    lp = frames(*CAT_SAT_ON_THE_MAB)
    with beam() as plain, beam(lm=lm[0], unigrams=lm[1]) as with_lm:
        assert plain.decode(lp, FS).text == "cat sat on the mab"
        result = with_lm.decode(lp, FS)
    assert result.text == "cat sat on the mat"
    # The acoustics favoured another letter, so the LM's word is the least sure one.
    mat = result.words[-1]
    assert mat.word == "mat" and mat.confidence < min(w.confidence for w in result.words[:-1])


def test_a_language_model_loads_without_a_unigram_list(lm):
    with beam(lm=lm[0]) as decoder:
        assert decoder.decode(frames(*CAT_SAT_ON_THE_MAB), FS).text == "cat sat on the mat"


def test_a_unigram_list_is_given_so_pyctcdecodes_missing_unigrams_warning_is_dropped(lm, caplog):
    """The LM is built without unigrams and given them after; only that build's warning goes,
    the pyctcdecode logger's level and its other warnings (and later ones) are left alone."""
    pyctc_log = logging.getLogger("pyctcdecode.language_model")
    level = pyctc_log.level
    with caplog.at_level(logging.WARNING):
        with beam(lm=lm[0], unigrams=lm[1]) as decoder:
            decoder.decode(frames(*CAT_SAT_ON_THE_MAB), FS)
        assert not [r for r in caplog.records if "No known unigrams" in r.getMessage()]
        pyctc_log.warning("No known unigrams provided, decoding results might be a lot worse.")
    assert pyctc_log.level == level
    assert [r.getMessage() for r in caplog.records if "No known" in r.getMessage()] == [
        "No known unigrams provided, decoding results might be a lot worse."
    ]


def test_a_missing_language_model_is_a_config_error_naming_it(tmp_path):
    missing = str(tmp_path / "nope.binary")
    with pytest.raises(ConfigError, match="nope.binary"):
        build_decoder(VOCAB, DecoderConfig(kind="beam", lm=missing))


def test_a_missing_unigram_list_is_a_config_error_naming_it(lm, tmp_path):
    with pytest.raises(ConfigError, match="nope.unigrams"):
        beam(lm=lm[0], unigrams=str(tmp_path / "nope.unigrams"))


# --- batches and the worker pool -----------------------------------------------------------------


def test_decode_batch_equals_decoding_one_by_one_and_reuses_one_pool(lm):
    batch = [ctc_like(seed, 150) for seed in range(4)] + [frames(*CAT_SAT_ON_THE_MAB)]
    config = DecoderConfig(kind="beam", lm=lm[0], unigrams=lm[1], n_best=2)
    with BeamSearchDecoder(VOCAB, config, workers=2) as decoder:
        assert decoder.pool is None  # created on first use
        first = decoder.decode_batch(batch, FS)
        pool = decoder.pool
        assert pool is not None
        second = decoder.decode_batch(batch[::-1], FS)
        assert decoder.pool is pool
        one_by_one = [decoder.decode(lp, FS) for lp in batch]
    assert first == one_by_one
    assert second == one_by_one[::-1]
    assert first[-1].text == "cat sat on the mat"


def test_a_batch_of_one_is_decoded_without_a_pool():
    with BeamSearchDecoder(VOCAB, DecoderConfig(kind="beam"), workers=2) as decoder:
        assert decoder.decode_batch([frames(CAT_SAT)], FS)[0].text == "cat sat"
        assert decoder.pool is None


def test_an_isolated_decoder_searches_even_one_utterance_in_its_pool(lm):
    # A server's stream decoder: the search runs in forked processes, so the caller's other
    # threads keep running; results equal the in-process search's.
    batch = [ctc_like(seed, 150) for seed in range(3)] + [frames(*CAT_SAT_ON_THE_MAB)]
    config = DecoderConfig(kind="beam", lm=lm[0], unigrams=lm[1])
    with BeamSearchDecoder(VOCAB, config, workers=1) as local:
        expected = [local.decode(lp, FS) for lp in batch]
    with BeamSearchDecoder(VOCAB, config, workers=1, isolate=True) as isolated:
        pool = isolated.pool
        assert pool is not None  # forked at construction, before the caller starts threads
        worker_pids = set(pool.apply(os.getpid) for _ in range(3))
        assert os.getpid() not in worker_pids
        assert [isolated.decode(lp, FS) for lp in batch] == expected
        assert isolated.decode_batch(batch[:1], FS) == expected[:1]
        hot = isolated.with_hotwords(["mab"])
        assert hot.pool is pool and hot.decode(batch[-1], FS).text == "cat sat on the mab"
        assert isolated.decode(np.zeros((0, len(VOCAB)), np.float32), FS).text == ""


def test_closing_the_decoder_stops_its_pool():
    decoder = BeamSearchDecoder(VOCAB, DecoderConfig(kind="beam"), workers=2)
    decoder.decode_batch([frames(CAT_SAT)] * 2, FS)
    pool = decoder.pool
    decoder.close()
    decoder.close()  # idempotent
    assert decoder.pool is None and decoder.closed
    with pytest.raises(ValueError, match="not running"):
        pool.apply(int)
    with pytest.raises(RuntimeError, match="closed"):
        decoder.decode(frames(CAT_SAT), FS)


def test_a_with_block_closes_the_decoder():
    with BeamSearchDecoder(VOCAB, DecoderConfig(kind="beam"), workers=2) as decoder:
        decoder.decode_batch([frames(CAT_SAT)] * 2, FS)
        pool = decoder.pool
    assert decoder.closed
    with pytest.raises(ValueError, match="not running"):
        pool.apply(int)


def test_a_forgotten_decoder_stops_its_pool_when_collected():
    decoder = BeamSearchDecoder(VOCAB, DecoderConfig(kind="beam"), workers=2)
    decoder.decode_batch([frames(CAT_SAT)] * 2, FS)
    pool = decoder.pool
    del decoder
    gc.collect()
    with pytest.raises(ValueError, match="not running"):
        pool.apply(int)


# --- configuration -------------------------------------------------------------------------------


def test_build_decoder_picks_the_kind():
    assert isinstance(build_decoder(VOCAB, DecoderConfig(kind="greedy")), GreedyDecoder)
    with build_decoder(VOCAB, DecoderConfig(kind="beam")) as decoder:
        assert isinstance(decoder, BeamSearchDecoder)
    with pytest.raises(ConfigError, match="'viterbi'"):
        build_decoder(VOCAB, DecoderConfig(kind="viterbi"))


def test_tuned_settings_are_saved_with_lm_paths_relative_to_their_file(tmp_path):
    checkpoint = tmp_path / "model.pt"
    lm = tmp_path / "lm" / "lm.bin"
    save_tuned_decoder(checkpoint, {"kind": "beam", "alpha": 0.7, "lm": str(lm)})
    assert "lm: lm/lm.bin" in (tmp_path / "decoder.yaml").read_text()  # the folder can move
    assert load_tuned_decoder(checkpoint) == {"kind": "beam", "alpha": 0.7, "lm": str(lm)}


def test_explicit_settings_win_over_tuned_ones_which_win_over_the_defaults(tmp_path):
    checkpoint = tmp_path / "model.pt"
    assert resolve_decoder(checkpoint) == DecoderConfig()  # no decoder.yaml: the defaults
    save_tuned_decoder(checkpoint, {"kind": "beam", "alpha": 0.7, "beta": 2.0})
    resolved = resolve_decoder(checkpoint, {"beta": 0.5})
    assert (resolved.kind, resolved.alpha, resolved.beta) == ("beam", 0.7, 0.5)
    assert resolved.beam_width == DecoderConfig().beam_width
    assert resolve_decoder(checkpoint, DecoderConfig()) == DecoderConfig()  # used as it is
    with pytest.raises(ConfigError, match="unknown decoder setting.* beams"):
        resolve_decoder(checkpoint, {"beams": 3})


def test_a_search_without_hotwords_never_asks_the_empty_hotword_trie(tmp_path, monkeypatch):
    """pyctcdecode asks its (empty) hotword trie about every new partial word; stt's decoder
    answers that itself (same beams, as the test above shows), and still pickles for a pool."""
    import pickle

    import pygtrie

    lm = str(tmp_path / "lm.arpa")
    Path(lm).write_text(ARPA)
    with beam(lm=lm) as decoder:
        expected = [decoder.decode(ctc_like(seed), FS).text for seed in range(3)]

        def refuse(self, key):
            raise AssertionError(f"the hotword trie was asked about {key!r}")

        monkeypatch.setattr(pygtrie.CharTrie, "has_node", refuse)
        assert [decoder.decode(ctc_like(seed), FS).text for seed in range(3)] == expected
        copy = pickle.loads(pickle.dumps(decoder._ctc()))  # what a pool's worker receives
        assert type(copy) is type(decoder._ctc())
