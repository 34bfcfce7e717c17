"""`stt finetune`: the head grows for new characters, frozen layers stay put, and the run reports
WER/CER before and after."""

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
from stt.data.manifest import read_manifest, write_manifest
from stt.model import ModelConfig, WaveNetCTC
from stt.text import Vocabulary
from stt.training.adapt import (
    freeze_norm_statistics,
    grow_head,
    mix_in,
    new_characters,
)
from stt.training.config import FinetuneConfig, TrainConfig
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
    assert saved["frozen"] == {"input_proj": True, "blocks": 1, "norm_stats": True}
    for when in ("before", "after"):
        for group in ("new", "original"):
            assert set(saved[when][group]) == {"wer", "cer"}
        assert (run_dir / f"eval_{when}" / "new").is_dir()
    assert "WER before" in (run_dir / "finetune_report.md").read_text()
