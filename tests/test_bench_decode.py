"""scripts/bench_decode.py from its command line on tiny data: greedy and beam + LM rows, and
with --reference-loop pyctcdecode's own loop timed beside stt's fast one on the same outputs,
which it must decode to the same hypotheses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from stt.checkpoint import model_state, save_checkpoint
from stt.data.manifest import Utterance, write_manifest
from stt.decoding import save_tuned_decoder
from stt.model import ModelConfig, WaveNetCTC
from stt.text import Vocabulary
from tests.test_decoding import ARPA

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))
import bench_decode  # noqa: E402
import machine  # noqa: E402  (scripts/machine.py, which the script writes results with)


def test_reference_loop_rows_time_pyctcdecodes_loop_and_find_the_same_hypotheses(
    tmp_path, monkeypatch
):
    rng = np.random.default_rng(0)
    utterances = []
    for i in range(3):
        path = tmp_path / f"{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(12000 + 4000 * i)).astype(np.float32),
                 16000)  # fmt: skip
        utterances.append(Utterance(path, (12000 + 4000 * i) / 16000, "the cat sat", {}))
    write_manifest(tmp_path / "dev" / "dev.jsonl", utterances)
    vocab = Vocabulary.default()
    config = ModelConfig(channels=8, kernel_size=3, dilations=[1, 2], stacks=1, stride=2,
                         head_channels=8)  # fmt: skip
    checkpoint = tmp_path / "model" / "model.pt"
    checkpoint.parent.mkdir()
    save_checkpoint(checkpoint, model_state(WaveNetCTC(config, len(vocab)).eval(), vocab))
    (checkpoint.parent / "lm.arpa").write_text(ARPA)
    save_tuned_decoder(checkpoint, {"kind": "beam", "lm": str(checkpoint.parent / "lm.arpa"),
                                    "alpha": 0.5, "beta": 1.0})  # fmt: skip
    monkeypatch.setattr(machine, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(sys, "argv", [
        "bench_decode.py", "--checkpoint", str(checkpoint), "--manifest",
        str(tmp_path / "dev" / "dev.jsonl"), "--widths", "4", "--token-min-logps", "-8",
        "--reference-loop", "--name", "tiny"])  # fmt: skip
    bench_decode.main()
    rows = json.loads((tmp_path / "results" / "tiny.json").read_text())["results"]
    assert [r["decoder"] for r in rows] == [
        "greedy", "beam4+lm.arpa token_min_logp -8", "beam4+lm.arpa token_min_logp -8"
        + bench_decode.REFERENCE]  # fmt: skip
    fast, reference = rows[1], rows[2]
    assert reference["same_hypotheses_as_fast_loop"] is True and fast["wer"] == reference["wer"]
    assert fast["same_hypotheses_as_fast_loop"] is None and reference["decode_x_realtime"] > 0
    from stt import beam_search

    assert beam_search.FAST_LOOP  # switched back on after the reference rows
