"""scripts/bench_accent.py's data preparation and verdicts: the speaker-disjoint plateau-dev
carve, the few- and many-speaker adaptation sets, and the targets of one run (the training runs
themselves are the benchmark, not a test)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from stt.data.manifest import Utterance

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_accent.py"
_spec = importlib.util.spec_from_file_location("bench_accent", SCRIPT)
bench_accent = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_accent)


def pool(speakers: int = 10, each: int = 6, seconds: float = 5.0) -> list[Utterance]:
    return [
        Utterance(Path(f"/a/s{s}_{i}.flac"), seconds, f"utt {s} {i}", {"speaker": f"s{s}"})
        for s in range(speakers)
        for i in range(each)
    ]


def test_the_plateau_dev_set_takes_whole_speakers_out_of_the_pool():
    utts = pool()
    rest, dev = bench_accent.carve_adapt_dev(utts, n_speakers=3, per_speaker=2, seed=1)
    dev_speakers = {u.speaker for u in dev}
    assert len(dev_speakers) == 3 and len(dev) == 6
    assert not dev_speakers & {u.speaker for u in rest}  # their other utterances are unused
    assert len(rest) == 7 * 6
    again = bench_accent.carve_adapt_dev(utts, n_speakers=3, per_speaker=2, seed=1)
    assert again == (rest, dev)  # seeded: a rerun draws the same split


def test_too_few_speakers_for_a_plateau_dev_set_is_an_error():
    with pytest.raises(bench_accent.BenchError, match="too few"):
        bench_accent.carve_adapt_dev(pool(speakers=3), n_speakers=3, per_speaker=2, seed=1)


def test_few_speakers_take_whole_speakers_and_many_one_utterance_each_per_round():
    utts = pool(speakers=10, each=6, seconds=5.0)  # 30 s per speaker
    few = bench_accent.draw_adaptation_set(utts, 1.0, "few", seed=2)  # 60 s
    many = bench_accent.draw_adaptation_set(utts, 1.0, "many", seed=2)
    assert len(few) == len(many) == 12
    assert len({u.speaker for u in few}) == 2  # two whole speakers
    assert len({u.speaker for u in many}) == 10  # every speaker, then a second round
    assert sum(u.duration for u in few) <= 60 and sum(u.duration for u in many) <= 60


def test_an_utterance_that_does_not_fit_is_skipped_and_the_draw_goes_on():
    utts = [
        Utterance(Path(f"/a/{i}.flac"), d, "x", {"speaker": f"s{i}"})
        for i, d in enumerate([50.0, 20.0, 5.0])
    ]
    chosen = bench_accent.draw_adaptation_set(utts, 0.5, "many", seed=0)  # 30 s
    assert sorted(u.duration for u in chosen) == [5.0, 20.0]


def test_an_unknown_spread_and_a_missing_speaker_are_errors():
    with pytest.raises(bench_accent.BenchError, match="spread"):
        bench_accent.draw_adaptation_set(pool(), 1.0, "some", seed=0)
    anonymous = [Utterance(Path("/a/x.flac"), 1.0, "x", {})]
    with pytest.raises(bench_accent.BenchError, match="without a speaker"):
        bench_accent.draw_adaptation_set(anonymous, 1.0, "few", seed=0)


def scores(accent: float, **original: float) -> dict:
    sets = {"accent_test": accent, **original}
    return {"beam": {n: {"wer": w} for n, w in sets.items()}}


def test_targets_are_judged_on_beam_wer_with_every_original_set_one_by_one():
    base = scores(0.80, librispeech=0.70, an4=0.10)
    run = {"scores": scores(0.44, librispeech=0.71, an4=0.104),
           "finetune": {"command_wall_minutes": 9.5}}  # fmt: skip
    verdict = bench_accent.judge(run, base, adapt_minutes=9.9)
    assert verdict["accent_relative_wer_reduction"]["value"] == pytest.approx(0.45)
    assert verdict["accent_relative_wer_reduction"]["met"]
    forgetting = verdict["original_relative_wer_increase"]
    assert forgetting["per_set"] == {"librispeech": pytest.approx(1 / 70, abs=1e-4),
                                     "an4": pytest.approx(0.04)}  # fmt: skip
    assert forgetting["worst"] == pytest.approx(0.04) and forgetting["met"]
    assert verdict["finetune_wall_minutes"]["met"] and verdict["adapt_minutes"]["met"]

    run["scores"]["beam"]["an4"]["wer"] = 0.11  # +10% on one set: the forgetting target fails
    assert not bench_accent.judge(run, base, 9.9)["original_relative_wer_increase"]["met"]


def test_the_readme_table_has_the_base_and_each_run_with_its_interval():
    names = ("accent_test", *bench_accent.ORIGINAL)
    base = {"beam": {n: {"wer": 0.5} for n in names}}
    run = {
        "scores": {"beam": {n: {"wer": 0.4} for n in names}},
        "adapt": {"minutes": 9.98, "speakers": 150},
        "finetune": {"command_wall_minutes": 6.64},
        "accent_change": {"beam": {"absolute_ci95": [-0.05, -0.02]}},
    }
    lines = bench_accent.table(base, {"default-many-10min": run}).splitlines()
    assert lines[2] == "| base | - | - | " + " | ".join(["50.0"] * len(names)) + " |"
    assert lines[3].startswith("| default-many-10min | 9.98 / 150 | 6.6 | 40.0 (-5.0 to -2.0) |")


def test_without_a_setting_inside_the_forgetting_target_the_least_forgetting_gainer_wins():
    def run(setting, accent, worst, high, met=False):
        return {"setting": setting, "overrides": {}, "spread": "many", "adapt_minutes_planned": 10,
                "scores": {"beam": {"accent_test": {"wer": accent}}},
                "targets": {"original_relative_wer_increase": {"worst": worst, "met": met}},
                "accent_change": {"beam": {"absolute_ci95": [-0.05, high]}}}  # fmt: skip

    runs = {"a": run("a", 0.80, 1.0, -0.02), "b": run("b", 0.85, 0.2, -0.01),
            "c": run("c", 0.84, 0.1, +0.01)}  # fmt: skip
    assert bench_accent.summary({}, runs)["best_setting"] == "b"  # c's gain is not significant
    runs["d"] = run("d", 0.86, 0.04, -0.01, met=True)
    assert bench_accent.summary({}, runs)["best_setting"] == "d"  # within the target wins


def test_the_base_trains_on_the_recipes_manifests_less_the_accent(tmp_path):
    """The base model's data is the shipped recipe's (the Opus corpora from their decoded
    copies) without speechocean762, so the accent is new to it."""
    manifests = bench_accent.base_train_manifests(tmp_path)
    assert manifests == [
        tmp_path / "decoded" / "librispeech" / "train.jsonl",
        tmp_path / "decoded" / "ljspeech" / "train.jsonl",
        tmp_path / "an4" / "train.jsonl",
        tmp_path / "fsdd" / "train.jsonl",
        tmp_path / "synth" / "train.jsonl",
    ]
