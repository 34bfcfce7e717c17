"""Bad and odd input, built on the fly, against every command that reads it.

For each kind of bad input: exit status 1, exactly one ``stt: error:`` line naming the file and
the problem, no traceback, the other inputs of the same call still processed, and files written
before left untouched. Odd but valid input (any bit depth, rate, channel count, codec, length)
is transcribed with exit status 0 and no error.

The model is tiny and random (what it says does not matter, only that every input gets through
or is refused in one line); ``main()`` runs in-process, so an uncaught exception fails the test
as a traceback would.
"""

from __future__ import annotations

import errno
import json
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stt.audio import SAMPLE_RATE
from stt.checkpoint import model_state, save_checkpoint
from stt.cli import main
from stt.model import ModelConfig, WaveNetCTC
from stt.text import Vocabulary

VOCAB = Vocabulary.default()
RNG = np.random.default_rng(0)


def speechlike(seconds: float, rate: int = SAMPLE_RATE, channels: int = 1) -> np.ndarray:
    """Tones switching every 0.3 s over a little noise: MFCC frames that vary like speech."""
    n = max(1, int(seconds * rate))
    t = np.arange(n) / rate
    freq = np.repeat(RNG.uniform(150, 3000, size=n // int(0.3 * rate) + 1), int(0.3 * rate))[:n]
    mono = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * RNG.standard_normal(n)
    return np.repeat(mono[:, None], channels, axis=1).astype(np.float32)


def write(path: Path, data: np.ndarray, rate: int = SAMPLE_RATE, **kwargs) -> Path:
    sf.write(str(path), data, rate, **kwargs)
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = ModelConfig(channels=16, kernel_size=3, dilations=[1, 2], stacks=1, stride=2,
                         norm="layer", head_channels=16, dropout=0.0)  # fmt: skip
    model = WaveNetCTC(config, len(VOCAB)).eval()
    return save_checkpoint(tmp_path_factory.mktemp("m") / "model.pt", model_state(model, VOCAB))


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("good")
    return write(folder / "good1.wav", speechlike(1.0)), write(
        folder / "good2.flac", speechlike(1.2)
    )


def run(capsys, *argv: str) -> tuple[int, list[str], list[str]]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


def assert_one_error(err: list[str], name: str, problem: str) -> None:
    errors = [line for line in err if line.startswith("stt: error:")]
    assert len(errors) == 1, err
    assert name in errors[0] and problem in errors[0], errors[0]
    assert not any("Traceback" in line for line in err)


# ---------------------------------------------------------------------------------------------
# Audio that cannot be transcribed: one line each, the other files still transcribed
# ---------------------------------------------------------------------------------------------


def _empty(p: Path) -> Path:
    p.write_bytes(b"")
    return p


def _bytes(data: bytes) -> Callable[[Path], Path]:
    def make(p: Path) -> Path:
        p.write_bytes(data)
        return p

    return make


def _truncated_header(p: Path) -> Path:
    full = write(p.with_suffix(".full.wav"), speechlike(0.5))
    p.write_bytes(full.read_bytes()[:20])
    return p


def _non_finite(value: float) -> Callable[[Path], Path]:
    def make(p: Path) -> Path:
        data = speechlike(0.5)
        data[100] = value
        return write(p, data, subtype="FLOAT")

    return make


def _no_frames(p: Path) -> Path:
    return write(p, np.zeros((0, 1), np.float32))


def _directory(p: Path) -> Path:
    p.mkdir()
    return p


def _too_low_rate(p: Path) -> Path:
    return write(p, speechlike(1.0, rate=500), rate=500)


def _truncated_flac(p: Path) -> Path:
    full = write(p.with_suffix(".full.flac"), speechlike(3.0))
    p.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return p


BAD_AUDIO = {
    "empty-file": ("x.wav", _empty, "file is empty"),
    "wav-header-cut-short": ("x.wav", _truncated_header, "not an audio file"),
    "random-bytes-wav": (
        "x.wav",
        _bytes(RNG.bytes(3000)),
        "not an audio file soundfile can decode",
    ),
    "random-bytes-flac": ("x.flac", _bytes(RNG.bytes(3000)), "not an audio file"),
    "random-bytes-mp3": (
        "x.mp3",
        _bytes(RNG.bytes(3000)),
        "not an audio file soundfile can decode",
    ),
    "text-named-ogg": ("x.ogg", _bytes(b"hello, I am text\n" * 50), "not an audio file"),
    "nan-samples": ("x.wav", _non_finite(np.nan), "NaN or infinite"),
    "inf-samples": ("x.wav", _non_finite(np.inf), "NaN or infinite"),
    "zero-frames": ("x.wav", _no_frames, "zero samples"),
    "empty-folder": ("x.wav", _directory, "no audio files"),
    "missing": ("x.wav", lambda p: p, "not found"),
    "rate-500-hz": ("x.wav", _too_low_rate, "too low"),
    "flac-cut-in-half": ("x.flac", _truncated_flac, "unreadable audio, damaged or truncated"),
}


@pytest.mark.parametrize("kind", sorted(BAD_AUDIO))
def test_bad_audio_is_one_line_and_the_other_files_are_still_transcribed(
    kind, tmp_path, capsys, model_path, good
):
    name, make, problem = BAD_AUDIO[kind]
    bad = make(tmp_path / name)
    code, out, err = run(
        capsys, "transcribe", str(good[0]), str(bad), str(good[1]), "--model", str(model_path),
        "--no-progress",
    )  # fmt: skip
    assert code == 1
    assert_one_error(err, str(bad), problem)
    assert [line.split(": ")[0] for line in out] == [str(good[0]), str(good[1])]


# ---------------------------------------------------------------------------------------------
# Odd but valid audio: transcribed, exit 0
# ---------------------------------------------------------------------------------------------


def _pcm(subtype: str, rate: int = SAMPLE_RATE, channels: int = 1, fmt: str | None = None):
    def make(p: Path) -> Path:
        return write(p, speechlike(1.0, rate, channels), rate, subtype=subtype, format=fmt)

    return make


def _signal(data: np.ndarray, rate: int = SAMPLE_RATE) -> Callable[[Path], Path]:
    return lambda p: write(p, data, rate)


ODD_AUDIO = {
    "one-sample": ("x.wav", _signal(np.full((1, 1), 0.1, np.float32))),
    "10-ms": ("x.wav", _signal(speechlike(0.01))),
    "clipping": ("x.wav", _signal(np.clip(4 * speechlike(1.0), -1, 1))),
    "8-bit": ("x.wav", _pcm("PCM_U8")),
    "24-bit": ("x.wav", _pcm("PCM_24")),
    "32-bit": ("x.wav", _pcm("PCM_32")),
    "float": ("x.wav", _pcm("FLOAT")),
    "double": ("x.wav", _pcm("DOUBLE")),
    "8-khz": ("x.wav", _pcm("PCM_16", 8000)),
    "44.1-khz": ("x.wav", _pcm("PCM_16", 44100)),
    "48-khz": ("x.flac", _pcm("PCM_16", 48000)),
    "odd-rate-11127": ("x.wav", _pcm("PCM_16", 11127)),
    "odd-rate-15999": ("x.wav", _pcm("PCM_16", 15999)),
    "stereo": ("x.wav", _pcm("PCM_16", channels=2)),
    "6-channels": ("x.wav", _pcm("PCM_16", channels=6)),
    "ogg-vorbis": ("x.ogg", _pcm("VORBIS", fmt="OGG")),
    "opus": ("x.opus", _pcm("OPUS", 48000, fmt="OGG")),
    "mp3": ("x.mp3", _pcm("MPEG_LAYER_III", 44100, fmt="MP3")),
}


@pytest.mark.parametrize("kind", sorted(ODD_AUDIO))
def test_odd_but_valid_audio_is_transcribed_without_error(kind, tmp_path, capsys, model_path):
    name, make = ODD_AUDIO[kind]
    path = make(tmp_path / name)
    code, out, err = run(capsys, "transcribe", str(path), "--model", str(model_path),
                         "--no-progress")  # fmt: skip
    assert code == 0, err
    assert not [line for line in err if "error" in line.lower()]
    assert len(out) == 1  # the transcript (may be empty for a tiny random model)


@pytest.mark.parametrize("kind", ["digital-silence", "antiphase-stereo", "noise-at-80dBFS"])
def test_no_speech_gives_an_empty_transcript(kind, tmp_path, capsys, model_path):
    n = 3 * SAMPLE_RATE
    left = speechlike(3.0)[:, 0]
    data = {
        "digital-silence": np.zeros((n, 1), np.float32),
        "antiphase-stereo": np.stack([left, -left], axis=1),  # its mono mix is exactly 0
        "noise-at-80dBFS": (1e-4 * RNG.standard_normal((n, 1))).astype(np.float32),
    }[kind]
    path = write(tmp_path / "quiet.wav", data, subtype="FLOAT")
    code, out, err = run(
        capsys,
        "transcribe",
        str(path),
        "--model",
        str(model_path),
        "--no-progress",
        "--format",
        "json",
        "--output-dir",
        str(tmp_path / "o"),
    )
    assert code == 0, err
    result = json.loads((tmp_path / "o" / "quiet.json").read_text())
    assert result["text"] == "" and result["segments"] == []


# ---------------------------------------------------------------------------------------------
# Manifests: `stt data validate` names file:line and goes on; `stt eval` refuses nothing usable
# ---------------------------------------------------------------------------------------------


def _manifest_lines(good_audio: Path) -> dict[str, bytes]:
    ok = json.dumps({"audio_filepath": str(good_audio), "duration": 1.0, "text": "a b"})
    return {
        "not-json": b"{this is not json",
        "json-list": b"[1, 2, 3]",
        "no-audio-key": json.dumps({"duration": 1.0, "text": "a"}).encode(),
        "no-text-key": json.dumps({"audio_filepath": str(good_audio), "duration": 1.0}).encode(),
        "negative-duration": ok.replace('"duration": 1.0', '"duration": -3').encode(),
        "string-duration": ok.replace('"duration": 1.0', '"duration": "long"').encode(),
        "not-utf8": b'{"audio_filepath": "\xff\xfe.wav", "duration": 1.0, "text": "a"}',
        "missing-audio": ok.replace(str(good_audio), str(good_audio) + ".gone").encode(),
    }


@pytest.mark.parametrize("kind", sorted(_manifest_lines(Path("a.wav"))))
def test_a_bad_manifest_line_is_named_by_number_and_the_other_lines_checked(
    kind, tmp_path, capsys, good
):
    good_line = json.dumps({"audio_filepath": str(good[0]), "duration": 1.0, "text": "a b"})
    bad_line = _manifest_lines(good[0])[kind]
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b"\n".join([good_line.encode(), bad_line, good_line.encode()]) + b"\n")
    code, out, err = run(capsys, "data", "validate", str(manifest), "--no-progress")
    assert code == 1
    report = "\n".join(out + err)
    assert f"{manifest}:2:" in report
    assert f"{manifest}:1:" not in report and f"{manifest}:3:" not in report
    assert "Traceback" not in report


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"{broken\n[1]\n"],
                         ids=["empty", "blank-lines", "all-lines-bad"])  # fmt: skip
def test_eval_of_a_manifest_with_nothing_usable_is_one_line_not_a_zero_wer(
    content, tmp_path, capsys, model_path
):
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(content)
    code, out, err = run(capsys, "eval", str(model_path), str(manifest), "--out",
                         str(tmp_path / "r"), "--no-progress")  # fmt: skip
    assert code == 1
    assert_one_error(err, str(manifest), "no usable utterances")
    assert not (tmp_path / "r" / "report.json").exists()


def test_a_folder_given_as_a_manifest_says_so(tmp_path, capsys):
    code, out, err = run(capsys, "data", "validate", str(tmp_path))
    assert code == 1 and "is a folder, not a manifest file" in "\n".join(out + err)


# ---------------------------------------------------------------------------------------------
# Checkpoints a user was sent
# ---------------------------------------------------------------------------------------------


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _checkpoints(tmp_path: Path, model_path: Path) -> dict[str, tuple[Path, str]]:
    made = {}
    p = tmp_path / "random.pt"
    p.write_bytes(RNG.bytes(5000))
    made["random-bytes"] = (p, "not a checkpoint")
    p = tmp_path / "plain.pt"
    p.write_bytes(pickle.dumps({"format": "stt-checkpoint"}))
    made["plain-pickle"] = (p, "not a checkpoint")
    p = tmp_path / "evil.pt"
    torch.save({"format": "stt-checkpoint", "version": 1, "model": _Payload(tmp_path / "pwned")}, p)
    made["malicious-pickle"] = (p, "refused")
    p = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(3)}}, p)
    made["foreign-torch-file"] = (p, "not an stt checkpoint")
    p = tmp_path / "cut.pt"
    p.write_bytes(model_path.read_bytes()[: model_path.stat().st_size // 2])
    made["truncated"] = (p, "not a")
    p = tmp_path / "folder.pt"
    p.mkdir()
    made["a-folder"] = (p, "is a folder")
    made["missing"] = (tmp_path / "gone.pt", "not found")
    return made


@pytest.mark.parametrize(
    "kind",
    ["random-bytes", "plain-pickle", "malicious-pickle", "foreign-torch-file", "truncated",
     "a-folder", "missing"],
)  # fmt: skip
def test_a_bad_checkpoint_is_one_line_and_runs_nothing(kind, tmp_path, capsys, model_path, good):
    path, problem = _checkpoints(tmp_path, model_path)[kind]
    code, out, err = run(capsys, "transcribe", str(good[0]), "--model", str(path), "--no-progress")
    assert code == 1 and out == []
    assert_one_error(err, str(path), problem)
    assert not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------------------------------------
# Output folders: said once, before any work; what was written before is kept
# ---------------------------------------------------------------------------------------------


def test_an_output_dir_that_is_a_file_is_one_line_and_the_file_is_untouched(
    tmp_path, capsys, model_path, good
):
    target = tmp_path / "taken"
    target.write_text("precious")
    code, out, err = run(capsys, "transcribe", str(good[0]), "--model", str(model_path),
                         "--output-dir", str(target), "--no-progress")  # fmt: skip
    assert code == 1
    assert_one_error(err, str(target), "is a file, not a folder")
    assert target.read_text() == "precious"


def test_an_output_dir_under_a_file_is_one_line(tmp_path, capsys, model_path, good):
    (tmp_path / "file").write_text("x")
    code, out, err = run(
        capsys,
        "transcribe",
        str(good[0]),
        "--model",
        str(model_path),
        "--output-dir",
        str(tmp_path / "file" / "out"),
        "--no-progress",
    )
    assert code == 1
    assert_one_error(err, "file/out", "cannot create it")


def test_a_full_disk_while_writing_keeps_earlier_transcripts_and_says_so_once_per_file(
    tmp_path, capsys, model_path, good, monkeypatch
):
    out_dir = tmp_path / "out"
    assert run(capsys, "transcribe", str(good[0]), "--model", str(model_path), "--format",
               "txt", "--output-dir", str(out_dir), "--no-progress")[0] == 0  # fmt: skip
    before = (out_dir / "good1.txt").read_bytes()

    import stt.atomic

    def full_disk(*args, **kwargs):  # the write of the new transcript fails half way
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(stt.atomic.os, "replace", full_disk)
    code, out, err = run(
        capsys,
        "transcribe",
        str(good[0]),
        "--model",
        str(model_path),
        "--format",
        "txt",
        "--output-dir",
        str(out_dir),
        "--no-progress",
    )
    assert code == 1
    assert_one_error(err, "good1.txt", "No space left on device")
    assert (out_dir / "good1.txt").read_bytes() == before
    assert sorted(p.name for p in out_dir.iterdir()) == ["good1.txt"]  # no temp files left


# ---------------------------------------------------------------------------------------------
# Options and settings, checked before any work starts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["transcribe", "{good}", "--device", "banana"], "--device=banana: not a device"),
        (["train", "trainer.patience=0"], "trainer.patience must be >= 1"),
        (["train", "optim.lr=nan"], "optim.lr must be a finite number >= 0"),
        (["train", "data.num_workers=-1"], "data.num_workers must be >= 0"),
        (["train", "trainer.monitor=bleu"], "trainer.monitor must be loss, wer or cer"),
        (["train", "trainer.device=banana"], "trainer.device must be"),
        (["data", "split", "{manifest}", "{tmp}/s", "--speaker-pattern", "(["],
         "not a regular expression"),
        (["data", "split", "{manifest}", "{tmp}/s", "--speaker-pattern", "abc"], "needs a group"),
        (["transcribe", "{good}", "--lm", "{good}"], "not a KenLM language model"),
    ],
    ids=["device", "patience", "lr-nan", "workers", "monitor", "train-device", "regex",
         "regex-no-group", "lm-not-an-lm"],
)  # fmt: skip
def test_a_bad_setting_is_one_line_before_any_work(argv, problem, tmp_path, capsys, good):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": str(good[0]), "duration": 1.0,
                                    "text": "a"}) + "\n")  # fmt: skip
    argv = [a.format(good=good[0], manifest=manifest, tmp=tmp_path) for a in argv]
    if argv[0] == "train":
        argv += [f"data.train=[{manifest}]", f"run_dir={tmp_path}/run"]
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert_one_error(err, "", problem)
    assert not (tmp_path / "run").exists()  # nothing started


def test_an_empty_dev_manifest_is_found_before_the_first_epoch(tmp_path, capsys, good):
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"audio_filepath": str(good[0]), "duration": 1.0,
                                 "text": "a b"}) + "\n")  # fmt: skip
    (tmp_path / "dev.jsonl").write_text("")
    code, out, err = run(capsys, "train", "model=small", f"data.train=[{train}]",
                         f"data.dev=[{tmp_path}/dev.jsonl]", f"run_dir={tmp_path}/run",
                         "trainer.progress=false")  # fmt: skip
    assert code == 1
    assert_one_error(err, "dev.jsonl", "no dev utterance that can be scored")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_stream_from_a_closed_stdin_is_one_line(model_path):
    result = subprocess.run(
        [sys.executable, "-m", "stt", "transcribe", "-", "--stream", "--model", str(model_path)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
        preexec_fn=lambda: __import__("os").close(0),
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert_one_error(result.stderr.splitlines(), "-", "standard input is closed")


def test_a_mixed_bag_in_one_process_has_no_traceback(tmp_path, model_path, good):
    """The same, end to end through the installed entry point (not main() in-process)."""
    bad = [make(tmp_path / f"{kind}{Path(name).suffix}")
           for kind, (name, make, _) in BAD_AUDIO.items() if kind != "missing"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "stt", "transcribe", str(good[0]), *map(str, bad), str(good[1]),
         "--model", str(model_path), "--no-progress"],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("stt: error:")]
    assert len(errors) == len(bad)
    assert all(any(str(path) in line for line in errors) for path in bad)
    assert not [line for line in result.stderr.splitlines() if line.startswith("Note:")]
    assert len(result.stdout.splitlines()) == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "{model}", "{manifest}", "--out", "{out}"],
        ["lm", "build", "{manifest}", "{out}"],
        ["synth", "{out}", "--hours", "0.001"],
        ["data", "split", "{manifest}", "{out}"],
        ["data", "decode", "{manifest}", "{out}"],
        ["transcribe", "{good}", "--model", "{model}", "--output-dir", "{out}"],
    ],
    ids=["eval", "lm-build", "synth", "split", "decode", "transcribe"],
)
@pytest.mark.parametrize("where", ["is-a-file", "under-a-file"])
def test_every_output_folder_in_the_way_of_a_file_is_one_line(
    argv, where, tmp_path, capsys, model_path, good
):
    blocker = tmp_path / "taken"
    blocker.write_text("precious")
    out = blocker if where == "is-a-file" else blocker / "sub"
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"audio_filepath": str(good[0]), "duration": 1.0, "text": "a"}) + "\n"
    )
    argv = [a.format(model=model_path, manifest=manifest, out=out, good=good[0]) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert_one_error(err, str(out), "is a file")
    assert blocker.read_text() == "precious"
