"""Language models: KenLM's lmplz/build_binary on normalised text, loaded by kenlm and pyctcdecode.

These tests run the real KenLM programs. ``make test`` runs ``scripts/setup.sh``, which builds them
into the virtualenv, so they are not skipped when missing: the failure says how to build them.
"""

from __future__ import annotations

import json
import random
import sys

import numpy as np
import pytest

from stt import lm
from stt.decoding import DecoderConfig, build_decoder
from stt.errors import ConfigError, STTError, ToolMissingError
from stt.lm import build_lm, kenlm_tool, load_unigrams, normalized_sentences
from stt.metrics import error_counts
from stt.text import Vocabulary, normalize_text

CORPUS = """\
The cat sat on the mat.
The dog sat on the log.
A cat and a dog sat together on the mat.
The cat saw the dog, and the dog saw the cat!
On Monday, the cat sat on the mat again.
"""

LABELS = ["", " ", *"abcdefghijklmnopqrstuvwxyz", "'"]
MEMORY = "100M"  # lmplz sizes its buffers from -S: keep the tests light on a busy machine


@pytest.fixture(scope="module")
def tools() -> None:
    for name in ("lmplz", "build_binary"):
        try:
            kenlm_tool(name)
        except ToolMissingError as e:
            pytest.fail(f"KenLM's {name} is not installed: run scripts/build_kenlm.sh ({e})")


@pytest.fixture(scope="module")
def built(tools, tmp_path_factory) -> lm.LMArtifacts:
    """One 3-gram model of :data:`CORPUS`, shared by the read-only tests."""
    root = tmp_path_factory.mktemp("lm")
    text = root / "corpus.txt"
    text.write_text(CORPUS, encoding="utf-8")
    return build_lm([text], root / "model", order=3, memory=MEMORY, progress=False)


def corpus_sentences() -> list[str]:
    return [normalize_text(line) for line in CORPUS.splitlines() if line.strip()]


def test_writes_arpa_binary_unigrams_and_settings(built):
    out = built.arpa.parent
    assert built.arpa == out / "lm.arpa" and built.binary == out / "lm.bin"
    assert built.unigrams == out / "unigrams.txt"
    assert sorted(p.name for p in out.iterdir()) == [
        "corpus.txt",
        "lm.arpa",
        "lm.bin",
        "lm.json",
        "unigrams.txt",
    ]  # no temporary folder left behind
    arpa = built.arpa.read_text(encoding="utf-8")
    assert arpa.startswith("\\data\\")
    for section in ("\\1-grams:", "\\2-grams:", "\\3-grams:", "\\end\\"):
        assert section in arpa
    assert "\\4-grams:" not in arpa
    assert built.order == 3
    sentences = corpus_sentences()
    assert built.sentences == len(sentences) == 5
    assert built.words == sum(len(s.split()) for s in sentences)
    info = json.loads((out / "lm.json").read_text(encoding="utf-8"))
    assert info["order"] == 3 and info["memory"] == MEMORY and info["binary_type"] == "trie"
    assert info["sentences"] == built.sentences and info["words"] == built.words
    assert info["vocabulary"] == len(load_unigrams(built.unigrams))
    assert set(info["ngrams"]) == {"1", "2", "3"}


def test_unigrams_are_the_corpus_vocabulary(built):
    vocabulary = sorted({w for s in corpus_sentences() for w in s.split()})
    assert load_unigrams(built.unigrams) == vocabulary
    assert built.unigrams.read_text(encoding="utf-8") == "".join(w + "\n" for w in vocabulary)


def test_binary_loads_in_kenlm_and_prefers_corpus_word_order(built):
    import kenlm

    model = kenlm.Model(str(built.binary))
    assert model.order == 3
    sentence = "the cat sat on the mat"
    words = sentence.split()
    shuffled = " ".join(random.Random(0).sample(words, len(words)))
    assert shuffled != sentence
    assert model.score(sentence) > model.score(shuffled) + 1.0
    # The ARPA and the binary are the same model.
    arpa_model = kenlm.Model(str(built.arpa))
    assert arpa_model.score(sentence) == pytest.approx(model.score(sentence), abs=1e-4)


def _log_probs(text: str, confusions: dict[int, dict[str, float]] | None = None) -> np.ndarray:
    """A CTC log-probability matrix spelling ``text``: each character for two frames, then a
    blank frame. ``confusions`` overrides the distribution of the character at an index."""
    frames = []
    for i, char in enumerate(text):
        dist = (confusions or {}).get(i, {char: 0.9})
        for _ in range(2):
            row = np.full(len(LABELS), 1e-4)
            for c, p in dist.items():
                row[LABELS.index(c)] = p
            frames.append(row)
        blank = np.full(len(LABELS), 1e-4)
        blank[0] = 0.9
        frames.append(blank)
    probs = np.array(frames)
    return np.log(probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def test_pyctcdecode_uses_the_model(built):
    from pyctcdecode import build_ctcdecoder

    decoder = build_ctcdecoder(
        LABELS, kenlm_model_path=str(built.binary), unigrams=load_unigrams(built.unigrams)
    )
    assert decoder.decode(_log_probs("the cat sat on the mat")) == "the cat sat on the mat"

    # The acoustics slightly prefer "kat"; the language model knows only "cat".
    unsure = _log_probs("the cat sat", {4: {"k": 0.5, "c": 0.4}})
    plain = build_ctcdecoder(LABELS)
    assert plain.decode(unsure) == "the kat sat"
    assert decoder.decode(unsure) == "the cat sat"


def test_text_is_normalised(tools, tmp_path):
    text = tmp_path / "raw.txt"
    text.write_text(
        "Dr. Smith's 21st BIRTHDAY, in 1990, cost $5!\n\n  ...  \n“Don’t”—she SAID.\n",
        encoding="utf-8",
    )
    art = build_lm([text], tmp_path / "out", order=2, memory=MEMORY, progress=False)
    corpus = (tmp_path / "out" / "corpus.txt").read_text(encoding="utf-8").splitlines()
    assert corpus == [
        "dr smith's twenty first birthday in nineteen ninety cost five dollars",
        "don't she said",
    ]
    assert art.sentences == 2 and art.words == 14
    words = load_unigrams(art.unigrams)
    assert "nineteen" in words and "smith's" in words and "don't" in words
    assert all(w == normalize_text(w) for w in words)
    assert not any(c.isupper() or c.isdigit() for w in words for c in w)


def test_several_files_and_string_paths(tools, tmp_path):
    (tmp_path / "a.txt").write_text("one two three\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("four five six\n", encoding="utf-8")
    texts = [str(tmp_path / "a.txt"), tmp_path / "b.txt"]
    art = build_lm(texts, str(tmp_path / "out"), order=2, memory=MEMORY, progress=False)
    assert (art.sentences, art.words) == (2, 6)
    assert load_unigrams(art.unigrams) == sorted("one two three four five six".split())


def test_missing_text_file_is_named(tools, tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("hello world\n", encoding="utf-8")
    missing = tmp_path / "missing.txt"
    with pytest.raises(STTError, match="missing.txt: text file not found"):
        build_lm([good, missing], tmp_path / "out", memory=MEMORY, progress=False)
    assert not (tmp_path / "out").exists()  # checked before anything is written
    with pytest.raises(STTError, match="missing.txt"):
        list(normalized_sentences([missing]))


def test_unreadable_text_is_named(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"fine line\ncaf\xe9\n")
    with pytest.raises(STTError, match=r"latin1.txt:2: not UTF-8"):
        list(normalized_sentences([bad]))
    with pytest.raises(STTError, match="folder"):
        build_lm([tmp_path], tmp_path / "out", memory=MEMORY, progress=False)


def test_normalized_sentences_skips_empty_lines(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("Hello, World!\n\n   \n!!!\nSECOND line\n", encoding="utf-8")
    assert list(normalized_sentences([text])) == ["hello world", "second line"]


def test_text_without_words_is_an_error(tools, tmp_path):
    text = tmp_path / "empty.txt"
    text.write_text("\n...\n\n", encoding="utf-8")
    with pytest.raises(STTError, match="no words"):
        build_lm([text], tmp_path / "out", memory=MEMORY, progress=False)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order": 1}, "order must be 2-6"),
        ({"order": 7}, "order must be 2-6"),
        ({"memory": "lots"}, "memory must be"),
        ({"prune": [0, 1, 1, 1]}, "prune"),
        ({"prune": [1, 0]}, "must not decrease"),
        ({"prune": [-1]}, "prune"),
    ],
)
def test_bad_settings(tmp_path, kwargs, message):
    text = tmp_path / "t.txt"
    text.write_text("a b c\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        build_lm([text], tmp_path / "out", progress=False, **kwargs)


def test_failed_build_leaves_previous_model_intact(tools, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(CORPUS, encoding="utf-8")
    out = tmp_path / "out"
    art = build_lm([text], out, order=3, memory=MEMORY, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    # Five near-identical sentences have no n-grams seen exactly three times, so the closed-form
    # Kneser-Ney discounts are undefined and lmplz refuses without --discount_fallback.
    text.write_text("the cat sat on the mat\n" * 5, encoding="utf-8")
    with pytest.raises(STTError, match=r"lmplz failed \((exit \d+|signal SIGABRT)\): .*discount"):
        build_lm([text], out, order=3, memory=MEMORY, discount_fallback=False, progress=False)
    with pytest.raises(STTError, match="lmplz failed .*memory"):
        build_lm([text], out, order=3, memory="10M", progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temp folder, no change
    assert art.binary.exists()


def test_prune_is_passed_to_lmplz(tools, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(CORPUS, encoding="utf-8")
    full = build_lm([text], tmp_path / "full", order=3, memory=MEMORY, progress=False)
    pruned = build_lm(
        [text], tmp_path / "pruned", order=3, memory=MEMORY, prune=[0, 0, 1], progress=False
    )
    counts = [json.loads((a.arpa.parent / "lm.json").read_text())["ngrams"] for a in (full, pruned)]
    assert counts[1]["3"] < counts[0]["3"]  # singleton trigrams dropped
    assert counts[1]["1"] == counts[0]["1"]


def test_kenlm_tool_prefers_the_venv(tmp_path, monkeypatch):
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    tool = venv_bin / "lmplz"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    assert kenlm_tool("lmplz") == tool


def test_kenlm_tool_missing(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ToolMissingError, match=r"lmplz not found: run scripts/build_kenlm.sh"):
        kenlm_tool("lmplz")
    text = tmp_path / "t.txt"
    text.write_text("a b c\n", encoding="utf-8")
    with pytest.raises(ToolMissingError, match="build_kenlm.sh"):
        build_lm([text], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_load_unigrams(tmp_path):
    path = tmp_path / "u.txt"
    path.write_text("alpha\n\n beta \ngamma\n", encoding="utf-8")
    assert load_unigrams(path) == ["alpha", "beta", "gamma"]
    with pytest.raises(STTError, match="nope.txt"):
        load_unigrams(tmp_path / "nope.txt")


def test_progress_shows_kenlm_output(tools, tmp_path, capfd):
    text = tmp_path / "t.txt"
    text.write_text(CORPUS, encoding="utf-8")
    build_lm([text], tmp_path / "quiet", order=2, memory=MEMORY, progress=False)
    assert capfd.readouterr().err == ""
    build_lm([text], tmp_path / "loud", order=2, memory=MEMORY, progress=True)
    err = capfd.readouterr().err
    assert "Writing ARPA model" in err and "SUCCESS" in err


def noisy_log_probs(text: str, vocab: Vocabulary, rng, confusion: float = 0.35) -> np.ndarray:
    """A deliberately noisy acoustic model's output for ``text``: each character gets two frames
    peaked on it, but with probability ``confusion`` a wrong letter edges it out (the right one
    stays a close second), and blanks separate characters."""
    import numpy as np

    letters = [i for i in range(2, len(vocab)) if vocab.tokens[i] != "'"]
    frames = []
    for char in text:
        target = vocab.encode(char)[0]
        for _ in range(2):
            row = np.full(len(vocab), -12.0)
            row[target] = -0.4
            if char != " " and rng.random() < confusion:
                wrong = int(rng.choice([i for i in letters if i != target]))
                row[wrong] = -0.3
            frames.append(row)
        blank = np.full(len(vocab), -12.0)
        blank[vocab.blank_id] = -0.05
        frames.append(blank)
    out = np.array(frames)
    return out - np.logaddexp.reduce(out, axis=1, keepdims=True)


def test_an_lm_of_the_test_sentences_beats_greedy_on_noisy_output(tmp_path):
    sentences = [
        "the quick brown fox jumps over the lazy dog",
        "she sells sea shells by the sea shore",
        "a stitch in time saves nine",
        "all that glitters is not gold",
        "the early bird catches the worm",
        "actions speak louder than words",
    ]
    text_file = tmp_path / "test_sentences.txt"
    text_file.write_text("\n".join(sentences) + "\n")
    lm = build_lm([text_file], tmp_path / "lm", order=3, memory="100M", progress=False)
    vocab = Vocabulary.default()
    rng = np.random.default_rng(0)
    outputs = [noisy_log_probs(s, vocab, rng) for s in sentences]

    with build_decoder(vocab, DecoderConfig(kind="greedy")) as greedy:
        greedy_wer = error_counts(sentences, [r.text for r in greedy.decode_batch(outputs, 0.02)])
    config = DecoderConfig(
        kind="beam", beam_width=32, lm=str(lm.binary), unigrams=str(lm.unigrams), alpha=1.0
    )
    with build_decoder(vocab, config) as beam:
        lm_wer = error_counts(sentences, [r.text for r in beam.decode_batch(outputs, 0.02)])
    assert greedy_wer.wer > 0.3  # the output really is noisy
    assert lm_wer.wer < 0.5 * greedy_wer.wer


def test_compressed_text_is_read_like_plain_text(tools, tmp_path):
    import bz2
    import gzip
    import lzma

    for suffix, opener in ((".xz", lzma.open), (".gz", gzip.open), (".bz2", bz2.open)):
        with opener(tmp_path / f"t.txt{suffix}", "wt", encoding="utf-8") as f:
            f.write("Hello, World!\nSECOND line\n")
        assert list(normalized_sentences([tmp_path / f"t.txt{suffix}"])) == [
            "hello world",
            "second line",
        ]
    broken = tmp_path / "broken.txt.xz"
    broken.write_bytes(b"not xz data")
    with pytest.raises(STTError, match="broken.txt.xz: cannot read text file"):
        list(normalized_sentences([broken]))


def test_quantised_binary_is_smaller_and_scores_alike(built, tmp_path):
    import kenlm

    # Enough distinct n-grams that the quantisation tables (fixed size) do not dominate.
    rng = random.Random(0)
    words = [f"w{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(300)]
    lines = [" ".join(rng.choices(words, k=12)) for _ in range(3000)]
    text = tmp_path / "corpus.txt"
    text.write_text(CORPUS * 20 + "\n".join(lines) + "\n", encoding="utf-8")
    plain = build_lm([text], tmp_path / "plain", order=3, memory=MEMORY, progress=False)
    small = build_lm(
        [text], tmp_path / "q8", order=3, memory=MEMORY, progress=False, quantize_bits=8
    )
    assert json.loads((small.binary.parent / "lm.json").read_text())["quantize_bits"] == 8
    assert small.binary.stat().st_size < plain.binary.stat().st_size
    a, b = kenlm.Model(str(plain.binary)), kenlm.Model(str(small.binary))
    seen, shuffled = lines[0], " ".join(reversed(lines[0].split()))
    assert abs(a.score(seen) - b.score(seen)) < 0.05 * abs(a.score(seen))  # typical n-grams
    assert b.score(seen) > b.score(shuffled)
    assert b.score("the cat sat on the mat") > b.score("mat the on sat cat the")
    with pytest.raises(ConfigError, match="quantisation must be 2-25 bits"):
        build_lm([text], tmp_path / "bad", order=3, memory=MEMORY, quantize_bits=40)
