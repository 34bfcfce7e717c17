"""The `stt` command line: help for every subcommand, one-line errors and exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stt.cli import SYNTH_FLAGS, TRANSCRIBE_FLAGS, build_parser, flag_overrides, sweep_grid
from stt.errors import ConfigError

SUBCOMMANDS = [
    [],
    ["synth"],
    ["data"],
    ["data", "validate"],
    ["data", "import"],
    ["data", "split"],
    ["data", "decode"],
    ["train"],
    ["finetune"],
    ["eval"],
    ["lm", "build"],
    ["transcribe"],
    ["export"],
    ["serve"],
    ["demo"],
]


def stt(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stt", *args], capture_output=True, text=True, cwd=cwd, check=False
    )


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=lambda w: " ".join(w) or "stt")
def test_every_subcommand_explains_itself(words):
    result = stt(*words, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: stt")
    assert len(result.stdout.splitlines()) > 4


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "stt"
    assert script.exists(), "pip install -e . should have created the stt console script"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "synth" in result.stdout


def test_validate_reports_a_bad_line_by_number_and_fails(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio_filepath": "a.wav", "duration": 1, "text": "x"}\n{oops\n')
    result = stt("data", "validate", "--no-audio", str(manifest))
    assert result.returncode == 1
    assert f"{manifest}:2: not valid JSON" in result.stdout


def test_validate_of_a_missing_manifest_is_one_line_and_fails(tmp_path):
    result = stt("data", "validate", str(tmp_path / "none.jsonl"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"{tmp_path / 'none.jsonl'}: manifest not found"


def test_import_of_a_missing_folder_is_one_line_and_fails(tmp_path):
    result = stt("data", "import", "an4", str(tmp_path / "nothing"), str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stderr.startswith("stt: error:") and str(tmp_path / "nothing") in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unknown_corpus_is_rejected_with_the_choices(tmp_path):
    result = stt("data", "import", "timit", str(tmp_path), str(tmp_path))
    assert result.returncode == 2 and "librispeech" in result.stderr


def test_override_without_equals_sign_is_rejected(tmp_path):
    result = stt("synth", str(tmp_path / "x"), "hours")
    assert result.returncode == 1
    assert "not of the form key=value" in result.stderr


def test_options_given_become_overrides_and_options_not_given_add_none():
    args = build_parser().parse_args(
        ["synth", "out", "--seed", "0", "--holdout-accent", "a", "--holdout-accent", "b",
         "--no-progress"]
    )  # fmt: skip
    assert flag_overrides(args, SYNTH_FLAGS) == [
        "seed=0",
        "holdout_accents=[a,b]",
        "progress=false",
    ]


def test_transcribe_format_option_is_quoted_so_its_commas_are_not_a_sweep():
    args = build_parser().parse_args(["transcribe", "a.wav", "--format", "txt,srt"])
    assert flag_overrides(args, TRANSCRIBE_FLAGS) == ["format='txt,srt'"]


def test_multirun_grid_varies_the_first_swept_key_slowest():
    grid, fixed = sweep_grid(["decoder.alpha=0.3,0.5", "decoder.beta=0,1"])
    assert grid == [
        {"alpha": 0.3, "beta": 0.0},
        {"alpha": 0.3, "beta": 1.0},
        {"alpha": 0.5, "beta": 0.0},
        {"alpha": 0.5, "beta": 1.0},
    ]
    assert fixed == []
    grid, _ = sweep_grid(["decoder.beam_width=64,128"])
    assert grid == [{"beam_width": 64}, {"beam_width": 128}]
    assert all(type(run["beam_width"]) is int for run in grid)  # decoder.yaml gets 128, not 128.0


def test_multirun_grid_expands_range_and_leaves_single_values_fixed():
    grid, fixed = sweep_grid(["decoder.alpha=range(0,1,0.5)", "decoder.beam_width=8"])
    assert grid == [{"alpha": 0.0}, {"alpha": 0.5}]
    assert fixed == ["decoder.beam_width=8"]


def test_multirun_without_a_listable_sweep_is_a_config_error():
    with pytest.raises(ConfigError, match="at least one"):
        sweep_grid(["decoder.alpha=0.5"])
    with pytest.raises(ConfigError, match="cannot list the values"):
        sweep_grid(["decoder.alpha=interval(0,1)"])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--host", "0.0.0.0"], "--allow-remote"),
        (["--port", "70000"], "--port must be 0-65535"),
        (["--wyoming", "http://x"], "--wyoming must be tcp://HOST:PORT"),
        (["--model", "no/such/model.pt"], "no/such/model.pt"),
        (["--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_serve_refuses_bad_settings_in_one_line_before_listening(args, words):
    result = stt("serve", *args)
    assert result.returncode == 1
    assert result.stderr.startswith("stt: error:") and words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_on_a_port_in_use_is_one_line_before_loading_anything():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = stt("serve", "--port", str(port), "--wyoming", "tcp://127.0.0.1:1")
    assert result.returncode == 1
    assert (
        result.stderr == f"stt: error: cannot listen on 127.0.0.1:{port} (--host/--port): "
        "Address already in use\n"
    )
