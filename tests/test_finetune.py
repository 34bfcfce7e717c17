"""`stt finetune`: the head grows for new characters, frozen layers stay put, and the run reports
WER/CER before and after; without data.dev it holds out whole speakers of data.train itself, and
the report's WER change comes with a paired-bootstrap interval."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from stt.checkpoint import load_checkpoint, read_model
from stt.cli import main
from stt.config import compose, to_dataclass
from stt.data.dataset import SpeechDataset, filter_feasible
from stt.data.manifest import Utterance, read_manifest, write_manifest
from stt.errors import ConfigError
from stt.metrics import paired_bootstrap_change
from stt.model import ModelConfig, WaveNetCTC
from stt.text import Vocabulary
from stt.training.adapt import (
    freeze,
    freeze_norm_statistics,
    grow_head,
    mix_in,
    new_characters,
)
from stt.training.config import DataConfig, FinetuneConfig, TrainConfig, TrainerConfig
from stt.training.finetune import change_sentence, hold_out_dev
from stt.training.trainer import train
from tests.conftest import TINY_MODEL, requires_synth_tools, tiny_corpus

FAST = [
    "data.num_workers=0",
    "data.max_batch_seconds=12",
    "trainer.progress=false",
    "trainer.tensorboard=false",
    "trainer.log_every_steps=1",
]


def tiny_model(vocab: Vocabulary) -> WaveNetCTC:
    config = ModelConfig(channels=16, kernel_size=3, dilations=[1, 2], stacks=1, head_channels=16)
    return WaveNetCTC(config, len(vocab))


def test_growing_the_head_keeps_the_old_rows_exactly_and_adds_quiet_new_ones():
    vocab = Vocabulary.default()
    model = tiny_model(vocab)
    old_weight = model.head.out.weight.detach().clone()
    old_bias = model.head.out.bias.detach().clone()
    bigger = vocab.extend(["é", "1"])
    grow_head(model, len(bigger))
    n = len(vocab)
    assert model.head.out.weight.shape[0] == len(bigger) == model.vocab_size
    assert torch.equal(model.head.out.weight[:n], old_weight)
    assert torch.equal(model.head.out.bias[:n], old_bias)
    assert torch.all(model.head.out.weight[n:] == 0)
    assert torch.all(model.head.out.bias[n:] < old_bias[1:].mean())
    log_probs, _ = model(torch.randn(1, 8000))
    assert log_probs.shape[-1] == len(bigger)


def test_frozen_norm_statistics_stay_put_while_their_scale_and_shift_train():
    model = tiny_model(Vocabulary.default())  # batch norm by default
    assert freeze_norm_statistics(model) == len(model.blocks) + 1  # and the head's
    norm = model.blocks[0].norm
    before = {k: v.clone() for k, v in norm.state_dict().items() if "running" in k}
    model.train()  # what the training loop does every epoch
    log_probs, _ = model(torch.randn(2, 8000) * 3.0 + 0.5)
    log_probs.logsumexp(-1).sum().backward()  # any loss: gradients must reach the affine terms
    after = {k: v for k, v in norm.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not norm.training and model.training
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in norm.parameters())


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_only_norms_trains_the_norms_scales_and_shifts_and_nothing_else(norm):
    config = ModelConfig(channels=16, kernel_size=3, dilations=[1, 2], stacks=1, head_channels=16,
                         norm=norm)  # fmt: skip
    model = WaveNetCTC(config, len(Vocabulary.default()))
    frozen = freeze(model, FinetuneConfig(only_norms=True, freeze_input_proj=False))
    assert frozen == ["every weight but the norms' scales and shifts"]
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    # per block and the head: the norm's weight and bias
    assert len(trainable) == 2 * (len(model.blocks) + 1)
    assert all(".norm." in f".{name}" for name in trainable), trainable
    log_probs, _ = model(torch.randn(2, 8000))
    log_probs.logsumexp(-1).sum().backward()
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
    assert all(p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)


def test_new_characters_come_from_the_training_transcripts_and_extra_chars(tmp_path):
    manifest = tmp_path / "new.jsonl"
    manifest.write_text(
        json.dumps({"audio_filepath": "a.flac", "duration": 1.0, "text": "café au lait 2"}) + "\n"
    )
    vocab = Vocabulary.default()
    ft = FinetuneConfig(extra_chars="ü")
    added = new_characters(vocab, ft, [str(manifest)])
    assert added == ["ü", "2", "é"]
    grown = vocab.extend(added)
    assert grown.tokens[: len(vocab)] == vocab.tokens
    utterances = read_manifest(manifest)
    kept, dropped = filter_feasible(utterances, grown, lambda seconds: 100)
    assert kept and not dropped
    assert SpeechDataset(kept, grown).utterances == kept
    assert new_characters(vocab, replace(ft, add_new_chars=False), [str(manifest)]) == ["ü"]


def test_mix_in_draws_a_seeded_share_of_the_original_data(tmp_path):
    manifest = tmp_path / "orig.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"audio_filepath": f"{i}.flac", "duration": 1.0, "text": "a"}) + "\n"
            for i in range(10)
        )
    )
    ft = FinetuneConfig(mix_manifests=[str(manifest)], mix_ratio=0.3)
    first = mix_in(ft, 20, seed=1)
    assert len(first) == 6 and len({u.audio_filepath for u in first}) == 6
    assert first == mix_in(ft, 20, seed=1)
    assert len(mix_in(ft, 50, seed=1)) == 15  # more than the pool: it is drawn again
    assert mix_in(replace(ft, mix_ratio=0.0), 20, seed=1) == []


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """About 40 s of synthetic speech in train/dev/test splits."""
    out = tmp_path_factory.mktemp("ft-corpus")
    return tiny_corpus(out, "the {a} {b} sat by the cafe near the river", seed=3)


@pytest.fixture(scope="module")
def base_model(corpus, tmp_path_factory) -> Path:
    """A tiny model trained for a few steps on the corpus: the starting checkpoint."""
    run_dir = tmp_path_factory.mktemp("ft-base")
    args = [
        f"run_dir={run_dir}",
        f"data.train=[{corpus / 'train.jsonl'}]",
        f"data.dev=[{corpus / 'dev.jsonl'}]",
        "trainer.max_steps=4",
        *FAST,
        *TINY_MODEL,
    ]
    train(to_dataclass(compose("train", args), TrainConfig))
    return run_dir / "best.pt"


def accented(corpus: Path, split: str, out: Path) -> Path:
    """The corpus split with "cafe" spelled "café": text with a character the model lacks."""
    utterances = [
        replace(u, text=u.text.replace("cafe", "café"))
        for u in read_manifest(corpus / f"{split}.jsonl")
    ]
    return write_manifest(out / f"{split}.jsonl", utterances)


@requires_synth_tools
def test_finetune_grows_the_vocabulary_keeps_frozen_layers_and_reports(
    corpus, base_model, tmp_path, capsys
):
    new = tmp_path / "accent"
    for split in ("train", "dev", "test"):
        accented(corpus, split, new)
    run_dir = tmp_path / "ft"
    args = [
        f"run_dir={run_dir}",
        f"init_from={base_model}",
        f"data.train=[{new / 'train.jsonl'}]",
        f"data.dev=[{new / 'dev.jsonl'}]",
        "finetune.freeze_blocks=1",
        f"finetune.mix_manifests=[{corpus / 'train.jsonl'}]",
        f"finetune.eval_new=[{new / 'test.jsonl'}]",
        f"finetune.eval_original=[{corpus / 'dev.jsonl'}]",
        "trainer.max_steps=4",
        "trainer.eval_every_steps=2",
        "trainer.device=cpu",
        *FAST,
    ]
    cfg = to_dataclass(compose("finetune", args), TrainConfig)
    assert cfg.optim.lr == 5e-4 and cfg.optim.warmup_steps == 50
    assert main(["finetune", *args]) == 0  # the command line runs what finetune(cfg) does
    printed = capsys.readouterr().out
    assert "characters added: é" in printed and f"{run_dir}/finetune_report.md" in printed

    start = load_checkpoint(base_model)
    end = load_checkpoint(run_dir / "best.pt")
    assert end["vocab"]["tokens"] == start["vocab"]["tokens"] + ["é"]
    for name, tensor in start["model"].items():
        if name.startswith(("input_proj.", "blocks.0.")):
            assert torch.equal(end["model"][name], tensor), name
    changed = [
        n for n, t in start["model"].items() if n.startswith("blocks.1.") and t.is_floating_point()
    ]
    assert any(not torch.equal(end["model"][n], start["model"][n]) for n in changed)

    model, vocab = read_model(run_dir / "best.pt")  # a normal checkpoint: transcribe/eval take it
    assert "é" in vocab and model.head.out.out_channels == len(vocab)

    saved = json.loads((run_dir / "finetune_report.json").read_text())
    assert saved["added_chars"] == ["é"]
    assert saved["frozen"] == {"input_proj": True, "blocks": 1, "norm_stats": True,
                              "only_norms": False}  # fmt: skip
    for when in ("before", "after"):
        for group in ("new", "original"):
            assert set(saved[when][group]) == {"wer", "cer"}
        assert (run_dir / f"eval_{when}" / "new").is_dir()
    assert "WER before" in (run_dir / "finetune_report.md").read_text()


@requires_synth_tools
def test_finetune_only_norms_from_the_command_line_changes_the_norms_and_nothing_else(
    corpus, base_model, tmp_path
):
    new = tmp_path / "accent"
    for split in ("train", "dev"):
        accented(corpus, split, new)
    run_dir = tmp_path / "ft-norms"
    args = [f"run_dir={run_dir}", f"init_from={base_model}", f"data.train=[{new / 'train.jsonl'}]",
            f"data.dev=[{new / 'dev.jsonl'}]", "finetune.only_norms=true",
            "trainer.max_steps=3", "trainer.eval_every_steps=3",
            "trainer.device=cpu", *FAST]  # fmt: skip
    assert main(["finetune", *args]) == 0
    start, end = load_checkpoint(base_model)["model"], load_checkpoint(run_dir / "last.pt")["model"]
    # the head grew for "é": compare its old rows
    moved = {n for n, t in start.items()
             if t.is_floating_point() and not torch.equal(end[n][: len(t)], t)}  # fmt: skip
    assert moved and all(".norm." in f".{n}" for n in moved), sorted(moved)
    saved = json.loads((run_dir / "finetune_report.json").read_text())
    assert saved["frozen"]["only_norms"] is True


# ---------------------------------------------------------------------------------------------
# Without data.dev: the held-out split
# ---------------------------------------------------------------------------------------------


def speech_manifest(path: Path, speakers: list[str | None], per_speaker: int) -> Path:
    """``per_speaker`` one-second utterances per speaker (None: no speaker key); no audio."""
    utterances = [
        Utterance(
            path.parent / f"{s or 'x'}-{i}-{j}.flac",
            1.0,
            "hello",
            {} if s is None else {"speaker": s},
        )
        for i, s in enumerate(speakers)
        for j in range(per_speaker)
    ]
    return write_manifest(path, utterances)


def split_config(run_dir: Path, manifest: Path, seed: int = 1) -> TrainConfig:
    return TrainConfig(
        run_dir=str(run_dir),
        data=DataConfig(train=[str(manifest)]),
        trainer=TrainerConfig(seed=seed),
        finetune=FinetuneConfig(),
    )


def test_without_dev_a_tenth_of_the_audio_is_held_out_as_whole_speakers(tmp_path, caplog):
    manifest = speech_manifest(tmp_path / "my.jsonl", [f"s{i}" for i in range(10)], 4)
    run_dir = tmp_path / "run"
    with caplog.at_level("INFO", logger="stt.finetune"):
        record = hold_out_dev(split_config(run_dir, manifest), as_eval_new=True)
    train = read_manifest(run_dir / "auto_split" / "train.jsonl")
    dev = read_manifest(run_dir / "auto_split" / "dev.jsonl")
    assert not {u.speaker for u in train} & {u.speaker for u in dev}
    assert len(train) + len(dev) == 40 and len(dev) == 4  # one speaker of ten
    assert record["by"] == "speaker" and record["dev_speakers"] == [dev[0].speaker]
    (line,) = [r.getMessage() for r in caplog.records if "no data.dev" in r.getMessage()]
    assert "held out 1 of 10 speakers (4 utterances, 0.1 min, 10% of the audio)" in line
    assert "as the dev set and the new evaluation set" in line
    assert str(run_dir / "auto_split" / "dev.jsonl") in line


def test_a_rerun_reuses_the_held_out_split_and_never_draws_again(tmp_path, caplog):
    manifest = speech_manifest(tmp_path / "my.jsonl", [f"s{i}" for i in range(10)], 4)
    run_dir = tmp_path / "run"
    first = hold_out_dev(split_config(run_dir, manifest, seed=1), as_eval_new=True)
    dev = run_dir / "auto_split" / "dev.jsonl"
    written = (dev.read_text(), dev.stat().st_mtime_ns)
    other = hold_out_dev(split_config(tmp_path / "other", manifest, seed=2), as_eval_new=True)
    assert other["dev_speakers"] != first["dev_speakers"]  # a fresh draw would differ
    with caplog.at_level("INFO", logger="stt.finetune"):
        again = hold_out_dev(split_config(run_dir, manifest, seed=2), as_eval_new=True)
    assert again == first
    assert (dev.read_text(), dev.stat().st_mtime_ns) == written
    assert any("reusing the split held out earlier" in r.getMessage() for r in caplog.records)


def test_a_held_out_split_of_other_data_is_refused(tmp_path):
    manifest = speech_manifest(tmp_path / "my.jsonl", [f"s{i}" for i in range(10)], 4)
    hold_out_dev(split_config(tmp_path / "run", manifest), as_eval_new=True)
    other = speech_manifest(tmp_path / "other.jsonl", [f"t{i}" for i in range(10)], 4)
    with pytest.raises(ConfigError, match="held out of .*my.jsonl.*give data.dev"):
        hold_out_dev(split_config(tmp_path / "run", other), as_eval_new=True)


def test_without_speaker_ids_a_random_tenth_of_the_utterances_is_held_out(tmp_path, caplog):
    manifest = speech_manifest(tmp_path / "my.jsonl", [None], 30)
    run_dir = tmp_path / "run"
    with caplog.at_level("INFO", logger="stt.finetune"):
        record = hold_out_dev(split_config(run_dir, manifest), as_eval_new=False)
    train = read_manifest(run_dir / "auto_split" / "train.jsonl")
    dev = read_manifest(run_dir / "auto_split" / "dev.jsonl")
    assert len(dev) == 3 and len(train) == 27
    assert not {u.audio_filepath for u in train} & {u.audio_filepath for u in dev}
    assert record["by"] == "utterance" and record["why"] == "no speaker ids"
    (line,) = [r.getMessage() for r in caplog.records if "no data.dev" in r.getMessage()]
    assert "3 random utterances of 30" in line and "no speaker ids" in line


def test_too_little_data_to_hold_out_a_dev_set_asks_for_data_dev(tmp_path):
    manifest = speech_manifest(tmp_path / "my.jsonl", ["ann"], 6)  # one speaker, 6 utterances
    with pytest.raises(
        ConfigError, match=r"too small .*6 utterance\(s\), 1 speaker\(s\).*data\.dev"
    ):
        hold_out_dev(split_config(tmp_path / "run", manifest), as_eval_new=True)
    assert not (tmp_path / "run" / "auto_split").exists()


# ---------------------------------------------------------------------------------------------
# The paired bootstrap of the WER change
# ---------------------------------------------------------------------------------------------


def test_identical_results_before_and_after_change_by_exactly_nothing():
    errors, words = [3, 0, 1, 5], [4, 4, 2, 9]
    assert paired_bootstrap_change(errors, errors, words) == (0.0, 0.0)


def test_the_bootstrap_pairs_the_utterances_of_before_and_after():
    # One more error on every 4-word utterance: +0.25 in every draw, whichever utterances it
    # draws. Unpaired draws would spread with how hard the drawn utterances are (0 to 5 errors).
    before = [0, 5, 1, 3]
    after = [e + 1 for e in before]
    assert paired_bootstrap_change(before, after, [4, 4, 4, 4]) == (0.25, 0.25)
    assert paired_bootstrap_change([2], [1], [4]) == (-0.25, -0.25)  # one utterance: no spread
    low, high = paired_bootstrap_change([2, 0], [0, 0], [2, 2])  # draws of 0, 1 or 2 fixes
    assert low == -1.0 and high == 0.0


def test_the_change_is_one_sentence_with_its_interval():
    change = {
        "before": 0.401, "after": 0.310, "ci95": [-0.142, -0.040], "significant": True,
        "utterances": 23, "speakers": 2, "unseen_speakers": 2, "held_out": True,
    }  # fmt: skip
    assert change_sentence(change) == (
        "WER fell from 40.1% to 31.0% on 23 held-out utterances of 2 unseen speakers "
        "(95% CI of the change: -14.2 to -4.0 points)."
    )
    noise = {**change, "after": 0.41, "ci95": [-0.02, 0.04], "significant": False}
    assert change_sentence(noise).startswith("WER rose from 40.1% to 41.0%")
    assert "within noise" in change_sentence(noise)


@requires_synth_tools
def test_finetune_without_dev_trains_on_the_rest_and_reports_the_held_out_change(
    corpus, base_model, tmp_path, caplog
):
    # Six speakers of two utterances each; each speaker's text has a letter of its own, which
    # the vocabulary gains even if that speaker is held out.
    pool = [
        u for split in ("train", "dev", "test") for u in read_manifest(corpus / f"{split}.jsonl")
    ]
    marks = "àáâãäå"
    utterances = [
        replace(
            u,
            text=u.text.replace("cafe", "café").replace("river", f"river{marks[i // 2]}"),
            extra={**u.extra, "speaker": f"s{i // 2}"},
        )
        for i, u in enumerate(pool[:12])
    ]
    mine = write_manifest(tmp_path / "my.jsonl", utterances)
    run_dir = tmp_path / "ft"
    args = [
        f"run_dir={run_dir}",
        f"init_from={base_model}",
        f"data.train=[{mine}]",
        "finetune.dev_fraction=0.2",
        "trainer.max_steps=4",
        "trainer.eval_every_steps=2",
        "trainer.device=cpu",
        *FAST,
    ]
    with caplog.at_level("INFO", logger="stt.finetune"):
        assert main(["finetune", *args]) == 0
    assert any("no data.dev: held out 2 of 6 speakers" in r.getMessage() for r in caplog.records)

    split = run_dir / "auto_split"
    train_part, dev_part = read_manifest(split / "train.jsonl"), read_manifest(split / "dev.jsonl")
    assert not {u.speaker for u in train_part} & {u.speaker for u in dev_part}
    assert len(train_part) + len(dev_part) == 12
    report = json.loads((run_dir / "finetune_report.json").read_text())
    assert report["dev"]["manifests"] == [str(split / "dev.jsonl")]
    assert report["eval_sets"]["new"] == [str(split / "dev.jsonl")]
    assert report["train"]["trained_on"] == [str(split / "train.jsonl")]
    assert set(report["added_chars"]) == set("é" + marks)

    change = report["wer_change"]["new"]
    low, high = change["ci95"]
    assert low <= change["absolute"] <= high
    assert change["significant"] == (not low <= 0 <= high)
    assert change["absolute"] == pytest.approx(
        report["after"]["new"]["wer"] - report["before"]["new"]["wer"]
    )
    assert change["utterances"] == 4 and change["speakers"] == change["unseen_speakers"] == 2
    assert (
        "held-out utterances of 2 unseen speakers (95% CI of the change:"
        in (run_dir / "finetune_report.md").read_text()
    )

    dev = split / "dev.jsonl"
    written = (dev.read_text(), dev.stat().st_mtime_ns)
    caplog.clear()
    with caplog.at_level("INFO", logger="stt.finetune"):
        assert main(["finetune", *args]) == 0  # the same command again: it resumes
    assert (dev.read_text(), dev.stat().st_mtime_ns) == written
    assert any("reusing the split held out earlier" in r.getMessage() for r in caplog.records)
