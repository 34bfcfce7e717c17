"""Corpus importers on tiny fake corpora built in each corpus's real on-disk layout."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stt.data.importers import (
    IMPORTERS,
    CorpusError,
    import_an4,
    import_corpus,
    import_librispeech,
    import_vctk,
)
from stt.data.manifest import read_manifest
from stt.errors import STTError

SR = 16_000


def tone(seconds: float, sample_rate: int = SR, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path: Path, seconds: float, sample_rate: int = SR, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, sample_rate), sample_rate, **kwargs)


def by_id(manifest: Path) -> dict:
    return {utt.extra["id"]: utt for utt in read_manifest(manifest)}


def assert_audio(utt, seconds: float) -> None:
    assert utt.audio_filepath.is_file()
    assert abs(utt.duration - seconds) < 0.05
    assert abs(sf.info(str(utt.audio_filepath)).duration - seconds) < 0.05


# ------------------------------------------------------------------------------------------
# LibriSpeech
# ------------------------------------------------------------------------------------------


def make_librispeech(root: Path) -> None:
    chapter = root / "LibriSpeech" / "dev-clean" / "84" / "121123"
    chapter.mkdir(parents=True)
    (chapter / "84-121123.trans.txt").write_text(
        "84-121123-0000 HELLO, World 2\n84-121123-0001 DON'T GO\n\n84-121123-0002 NO AUDIO HERE\n"
    )
    write(chapter / "84-121123-0000.flac", 0.5)
    write(chapter / "84-121123-0001.flac", 0.3)
    other = root / "LibriSpeech" / "test-clean" / "1089" / "134686"
    other.mkdir(parents=True)
    (other / "1089-134686.trans.txt").write_text("1089-134686-0000 HE HOPED\n")
    write(other / "1089-134686-0000.flac", 0.4)


def test_librispeech(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_librispeech(tmp_path / "src")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="stt.data.importers"):
        paths = import_librispeech(tmp_path / "src", out, progress=False)
    assert paths == [out / "dev-clean.jsonl", out / "test-clean.jsonl"]
    dev = read_manifest(paths[0])
    assert [u.extra["id"] for u in dev] == ["84-121123-0000", "84-121123-0001"]
    assert [u.text for u in dev] == ["hello world two", "don't go"]
    assert dev[0].extra == {"speaker": "84", "chapter": "121123", "id": "84-121123-0000"}
    assert_audio(dev[0], 0.5)
    assert_audio(dev[1], 0.3)
    assert_audio(read_manifest(paths[1])[0], 0.4)
    assert "skipped 1 of 3" in caplog.text and "1 missing audio" in caplog.text


def test_librispeech_subset_folder_and_dispatch(tmp_path: Path) -> None:
    make_librispeech(tmp_path / "src")
    subset = tmp_path / "src" / "LibriSpeech" / "test-clean"
    paths = import_corpus("librispeech", subset, tmp_path / "out", progress=False)
    assert [p.name for p in paths] == ["test-clean.jsonl"]
    assert read_manifest(paths[0])[0].text == "he hoped"


def test_librispeech_malformed_line(tmp_path: Path) -> None:
    make_librispeech(tmp_path / "src")
    trans = tmp_path / "src" / "LibriSpeech" / "test-clean" / "1089" / "134686"
    (trans / "1089-134686.trans.txt").write_text("1089-134686-0000 HE HOPED\n1089-134686-0001\n")
    with pytest.raises(STTError, match=r"1089-134686\.trans\.txt:2: expected 'ID TRANSCRIPT'"):
        import_librispeech(tmp_path / "src", tmp_path / "out", progress=False)


# ------------------------------------------------------------------------------------------
# Common Voice
# ------------------------------------------------------------------------------------------

CV_HEADER = "\t".join(
    ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "{accent}"]
    + ["locale", "segment"]
)


def cv_row(client: str, path: str, sentence: str, age="", gender="", accent="") -> str:
    return "\t".join([client, path, sentence, "2", "0", age, gender, accent, "en", ""])


def test_commonvoice(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "cv"
    (src / "clips").mkdir(parents=True)
    for name, seconds in [("a.mp3", 1.0), ("b.mp3", 0.6), ("c.mp3", 0.8)]:
        write(src / "clips" / name, seconds, format="MP3")
    (src / "train.tsv").write_text(
        "\n".join(
            [
                CV_HEADER.format(accent="accents"),
                cv_row("spk1", "b.mp3", 'She said "HELLO, World 2"', "twenties", "female", "us"),
                cv_row("spk2", "a.mp3", "Fine.", gender="male"),
                cv_row("spk2", "gone.mp3", "Missing clip."),
            ]
        )
        + "\n"
    )
    # Older releases: 'accent' column; some rows even lack trailing columns.
    (src / "test.tsv").write_text(
        CV_HEADER.format(accent="accent") + "\n" + "spk3\tc.mp3\tThird one\t1\t0\tthirties\n"
    )
    (src / "other.tsv").write_text(CV_HEADER.format(accent="accents") + "\n")  # ignored
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="stt.data.importers"):
        paths = import_corpus("commonvoice", src, out, progress=False)
    assert [p.name for p in paths] == ["train.jsonl", "test.jsonl"]
    train = by_id(paths[0])
    assert list(train) == ["a", "b"]  # sorted by clip name
    assert train["b"].text == "she said hello world two"
    assert train["b"].extra == {
        "speaker": "spk1",
        "id": "b",
        "accent": "us",
        "gender": "female",
        "age": "twenties",
    }
    assert train["a"].extra == {"speaker": "spk2", "id": "a", "gender": "male"}
    assert_audio(train["a"], 1.0)
    assert_audio(train["b"], 0.6)
    test = by_id(paths[1])
    assert test["c"].extra == {"speaker": "spk3", "id": "c", "age": "thirties"}
    assert_audio(test["c"], 0.8)
    assert "commonvoice train: skipped 1 of 3" in caplog.text


# ------------------------------------------------------------------------------------------
# VCTK
# ------------------------------------------------------------------------------------------


def make_vctk_text(root: Path) -> None:
    for speaker, uid, text in [
        ("p225", "p225_001", "Please call Stella."),
        ("p225", "p225_002", "Ask her 2 bring these things."),
        ("p226", "p226_001", "Please call Stella."),
        ("p226", "p226_002", "Bad or no audio for this one."),
    ]:
        (root / "txt" / speaker).mkdir(parents=True, exist_ok=True)
        (root / "txt" / speaker / f"{uid}.txt").write_text(text + "\n")


def test_vctk_092(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "VCTK"
    make_vctk_text(src)
    audio = src / "wav48_silence_trimmed"
    write(audio / "p225" / "p225_001_mic1.flac", 0.5, 48_000)
    write(audio / "p225" / "p225_001_mic2.flac", 0.7, 48_000)
    write(audio / "p225" / "p225_002_mic2.flac", 0.4, 48_000)  # mic1 absent: fall back
    write(audio / "p226" / "p226_001_mic1.flac", 0.6, 48_000)
    (audio / "p226" / "p226_002_mic1.flac").write_bytes(b"not audio at all" * 10)  # unreadable
    (src / "speaker-info.txt").write_text(
        "ID  AGE  GENDER  ACCENTS  REGION COMMENTS\n"
        "p225  23  F    English    Southern  England\n"
        "p226  22  M    English    Surrey\n"
    )
    with caplog.at_level(logging.WARNING, logger="stt.data.importers"):
        paths = import_vctk(src, tmp_path / "out", progress=False)
    assert [p.name for p in paths] == ["vctk.jsonl"]
    utts = by_id(paths[0])
    assert list(utts) == ["p225_001", "p225_002", "p226_001"]
    assert_audio(utts["p225_001"], 0.5)  # mic1 preferred
    assert utts["p225_001"].audio_filepath.name == "p225_001_mic1.flac"
    assert_audio(utts["p225_002"], 0.4)
    assert utts["p225_002"].text == "ask her two bring these things"
    assert utts["p225_001"].extra == {
        "speaker": "p225",
        "id": "p225_001",
        "gender": "female",
        "accent": "English",
    }
    assert utts["p226_001"].accent == "English" and utts["p226_001"].speaker == "p226"
    assert "skipped 1 of 4 utterances (0 missing audio, 1 unreadable audio" in caplog.text


def test_vctk_080(tmp_path: Path) -> None:
    src = tmp_path / "extracted" / "VCTK-Corpus"  # SRC may be the folder above the corpus
    make_vctk_text(src)
    for uid, seconds in [("p225_001", 0.5), ("p225_002", 0.3), ("p226_001", 0.2)]:
        write(src / "wav48" / uid[:4] / f"{uid}.wav", seconds, 48_000)
    (src / "speaker-info.txt").write_text(
        "ID  AGE  GENDER  ACCENTS  REGION\n225  23  F    English    Southern  England\n"
    )
    utts = by_id(import_vctk(tmp_path / "extracted", tmp_path / "out", progress=False)[0])
    assert list(utts) == ["p225_001", "p225_002", "p226_001"]
    assert_audio(utts["p226_001"], 0.2)
    assert utts["p225_002"].extra["gender"] == "female"
    assert "accent" not in utts["p226_001"].extra  # speaker not in speaker-info


# ------------------------------------------------------------------------------------------
# AN4
# ------------------------------------------------------------------------------------------


def test_an4(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "an4"
    etc = src / "etc"
    etc.mkdir(parents=True)
    train = [
        ("an4_clstk/fash/an251-fash-b", "RUBOUT G M E F THREE NINE", 0.5),
        ("an4_clstk/fash/an253-fash-b", "GO", 0.3),
        ("an4_clstk/fbbh/an86-fbbh-b", "YES", 0.4),
        ("an4_clstk/fbbh/an87-fbbh-b", "NO", None),  # audio missing
    ]
    (etc / "an4_train.fileids").write_text("".join(f"{f}\n" for f, _, _ in train))
    (etc / "an4_train.transcription").write_text(
        "".join(f"<s> {t} </s> ({Path(f).name})\n" for f, t, _ in train)
    )
    wav = src / "wav"
    write(wav / "an4_clstk/fash/an251-fash-b.sph", 0.5, format="NIST", subtype="PCM_16")
    write(wav / "an4_clstk/fash/an253-fash-b.wav", 0.3)
    raw = wav / "an4_clstk/fbbh/an86-fbbh-b.raw"
    raw.parent.mkdir(parents=True)
    (tone(0.4) * 32767).astype(">i2").tofile(raw)
    # Test split: no .fileids, ids in the speaker-first order; found by searching wav/.
    (etc / "an4_test.transcription").write_text("<s> ENTER FIFTY </s> (fcaw-cen1-b)\n")
    write(wav / "an4test_clstk/fcaw/cen1-fcaw-b.sph", 0.6, format="NIST", subtype="PCM_16")

    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="stt.data.importers"):
        paths = import_an4(src, out, progress=False)
    assert paths == [out / "an4_train.jsonl", out / "an4_test.jsonl"]
    utts = by_id(paths[0])
    assert list(utts) == ["an251-fash-b", "an253-fash-b", "an86-fbbh-b"]
    assert utts["an251-fash-b"].text == "rubout g m e f three nine"
    assert utts["an251-fash-b"].speaker == "fash"
    assert utts["an86-fbbh-b"].speaker == "fbbh"
    for uid, seconds in [("an251-fash-b", 0.5), ("an253-fash-b", 0.3), ("an86-fbbh-b", 0.4)]:
        assert_audio(utts[uid], seconds)
    converted = utts["an86-fbbh-b"].audio_filepath
    assert converted == (out / "audio/an4_clstk/fbbh/an86-fbbh-b.flac").resolve()
    assert '"audio_filepath": "audio/an4_clstk/fbbh/an86-fbbh-b.flac"' in paths[0].read_text()
    assert np.allclose(sf.read(str(converted))[0], tone(0.4), atol=1e-3)
    assert "an4 an4_train: skipped 1 of 4 utterances (1 missing audio" in caplog.text
    (test,) = read_manifest(paths[1])
    assert test.text == "enter fifty" and test.speaker == "fcaw"
    assert_audio(test, 0.6)


def test_an4_malformed_line(tmp_path: Path) -> None:
    src = tmp_path / "an4"
    (src / "etc").mkdir(parents=True)
    (src / "wav").mkdir()
    (src / "etc" / "an4_train.transcription").write_text("<s> YES </s> (an86-fbbh-b)\n<s> NO\n")
    with pytest.raises(CorpusError, match=r"an4_train\.transcription:2:"):
        import_an4(src, tmp_path / "out", progress=False)


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(IMPORTERS))
def test_unknown_layout(tmp_path: Path, name: str) -> None:
    src = tmp_path / "not_a_corpus"
    (src / "stuff").mkdir(parents=True)
    (src / "readme.txt").write_text("hello")
    with pytest.raises(STTError, match=f"{src}: not an? ") as info:
        import_corpus(name, src, tmp_path / "out", progress=False)
    assert "\n" not in str(info.value) and "expected" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_missing_src_and_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(STTError, match="nowhere: corpus folder not found"):
        import_corpus("vctk", tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(STTError, match="unknown corpus 'timit'.*librispeech"):
        import_corpus("timit", tmp_path, tmp_path / "out")


def test_all_audio_missing_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "VCTK"
    make_vctk_text(src)
    (src / "wav48").mkdir()
    with pytest.raises(CorpusError, match="no usable vctk utterances"):
        import_vctk(src, tmp_path / "out", progress=False)


def test_progress_bar_does_not_break(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_librispeech(tmp_path / "src")
    import_librispeech(tmp_path / "src", tmp_path / "out", progress=True)
    assert "librispeech dev-clean" in capsys.readouterr().err
