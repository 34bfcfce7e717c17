"""Every job's YAML under conf/ against the dataclass the CLI builds from it: it composes and
builds with no overrides, it names exactly the dataclass's fields, and where both give a default
they agree, so a default lives in one place (or the two say the same). The few deliberate
exceptions are listed below, each with its reason; a new disagreement, or a listed one that has
been settled, fails the test."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from stt.config import compose, conf_dir, to_dataclass
from stt.data.synth import SynthConfig
from stt.decoding import DecoderConfig
from stt.evaluate import EvalConfig
from stt.serve.config import ServeConfig
from stt.training.config import TrainConfig
from stt.transcribe import TranscribeConfig

# conf/<name>.yaml -> the dataclass that `compose("<name>")` feeds (stt/cli.py).
JOBS: dict[str, type] = {
    "synth": SynthConfig,
    "train": TrainConfig,
    "finetune": TrainConfig,
    "eval": EvalConfig,
    "transcribe": TranscribeConfig,
    "serve": ServeConfig,
}

# `???` values: mandatory, so the bare YAML cannot build; the CLI always fills them.
MANDATORY: dict[str, list[str]] = {"eval": ["checkpoint=model.pt"]}

# Fields a job's YAML leaves out on purpose.
NOT_IN_YAML: set[tuple[str, str]] = {
    # `finetune` is the section conf/finetune.yaml adds; plain training has none (None).
    ("train", "finetune"),
}

# Keys whose YAML value differs from the dataclass default, and why (yaml vs dataclass).
KNOWN_DIFFERENCES: set[tuple[str, str]] = {
    # Model geometry is a preset chosen in the YAML (train.yaml: `model: small`; see
    # conf/model/), while ModelConfig's defaults are one generic geometry (base's, at stride 1)
    # that library callers and tests build on with a few keys, and that
    # model_config_from_dict falls back to for keys a checkpoint lacks.
    ("train", "model.channels"),  # 64 (small) vs 128
    ("train", "model.kernel_size"),  # 5 vs 7
    ("train", "model.stacks"),  # 2 vs 3
    ("train", "model.stride"),  # 2 vs 1
    ("train", "model.head_channels"),  # 64 vs 128
    ("finetune", "model.channels"),  # the same five, inherited from train.yaml
    ("finetune", "model.kernel_size"),
    ("finetune", "model.stacks"),
    ("finetune", "model.stride"),
    ("finetune", "model.head_channels"),
    # conf/finetune.yaml is the train job with a few keys changed; both build TrainConfig,
    # whose defaults are the train job's.
    ("finetune", "run_dir"),  # runs/finetune vs runs/train
    ("finetune", "init_from"),  # default (the shipped model) vs None
    ("finetune", "optim.lr"),  # 5e-4 vs 2e-3
    ("finetune", "optim.warmup_steps"),  # 50 vs 300
    ("finetune", "trainer.patience"),  # 3 vs 5
}

# Config groups whose options no job selects by default: checked against their dataclass alone.
STANDALONE_GROUPS: dict[str, type] = {"decoder": DecoderConfig}


def _nested(cls: type, name: str) -> type | None:
    """The dataclass type of field ``name`` of ``cls`` (``X | None`` unwrapped), else None."""
    hint = typing.get_type_hints(cls)[name]
    for candidate in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(candidate):
            return candidate
    return None


def yaml_leaves(mapping: dict, cls: type, prefix: str = "") -> dict[str, object]:
    """``mapping`` flattened to dotted keys, descending into nested dataclass fields only (a
    ``dict[str, float]`` field is one value)."""
    names = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, object] = {}
    for key, value in mapping.items():
        nested = _nested(cls, key) if key in names else None
        if nested is not None and isinstance(value, dict):
            out.update(yaml_leaves(value, nested, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def dataclass_leaves(cls: type, instance: object | None = None, prefix: str = "") -> dict:
    """The defaults of ``cls`` flattened like :func:`yaml_leaves`. A nested dataclass field whose
    default is None (``TrainConfig.finetune``) contributes its own type's defaults."""
    instance = cls() if instance is None else instance
    out: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        value = getattr(instance, f.name)
        nested = _nested(cls, f.name)
        if nested is not None:
            out.update(dataclass_leaves(nested, value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def job_leaves(job: str) -> dict[str, object]:
    """conf/<job>.yaml as composed with no overrides, flattened against its dataclass."""
    return yaml_leaves(OmegaConf.to_container(compose(job), resolve=True), JOBS[job])


def group_options() -> list[tuple[str, str]]:
    return sorted((path.parent.name, path.stem) for path in conf_dir().glob("*/*.yaml"))


def test_every_job_yaml_has_its_dataclass_here():
    assert sorted(p.stem for p in conf_dir().glob("*.yaml")) == sorted(JOBS)


@pytest.mark.parametrize("job", sorted(JOBS))
def test_job_composes_and_builds_its_dataclass(job: str):
    built = to_dataclass(compose(job, MANDATORY.get(job, [])), JOBS[job])
    assert isinstance(built, JOBS[job])


@pytest.mark.parametrize("job", sorted(JOBS))
def test_every_yaml_key_is_a_dataclass_field(job: str):
    unknown = sorted(set(job_leaves(job)) - set(dataclass_leaves(JOBS[job])))
    assert unknown == [], f"conf/{job}.yaml: keys {JOBS[job].__name__} lacks: {unknown}"


@pytest.mark.parametrize("job", sorted(JOBS))
def test_every_dataclass_field_is_in_the_yaml(job: str):
    absent = set(dataclass_leaves(JOBS[job])) - set(job_leaves(job))
    # A field left out on purpose counts as one entry however many leaves it has.
    excused = {key for key in absent if (job, key.split(".")[0]) in NOT_IN_YAML}
    assert sorted(absent - excused) == [], f"conf/{job}.yaml lacks {sorted(absent - excused)}"
    stale = {key for j, key in NOT_IN_YAML if j == job} - {k.split(".")[0] for k in absent}
    assert not stale, f"NOT_IN_YAML: conf/{job}.yaml now has {sorted(stale)}; drop them there"


@pytest.mark.parametrize("job", sorted(JOBS))
def test_yaml_and_dataclass_defaults_agree(job: str):
    yaml, defaults = job_leaves(job), dataclass_leaves(JOBS[job])
    differ = {key: (yaml[key], defaults[key]) for key in yaml.keys() & defaults.keys()
              if yaml[key] != defaults[key]}  # fmt: skip
    known = {key for j, key in KNOWN_DIFFERENCES if j == job}
    new = {k: f"yaml {v[0]!r} != dataclass {v[1]!r}" for k, v in differ.items() if k not in known}
    assert not new, f"conf/{job}.yaml disagrees with {JOBS[job].__name__}: {new}"
    settled = sorted(known - differ.keys())
    assert not settled, f"KNOWN_DIFFERENCES: conf/{job}.yaml now agrees on {settled}; drop them"


@pytest.mark.parametrize(
    "group,option", group_options(), ids=[f"{g}/{o}" for g, o in group_options()]
)
def test_every_group_option_builds_and_names_every_field(group: str, option: str):
    if group in STANDALONE_GROUPS:
        cls = STANDALONE_GROUPS[group]
        mapping = OmegaConf.to_container(OmegaConf.load(conf_dir() / group / f"{option}.yaml"))
        assert isinstance(to_dataclass(OmegaConf.create(mapping), cls), cls)
        yaml, fields = yaml_leaves(mapping, cls), dataclass_leaves(cls)
    else:  # a group of conf/train.yaml's defaults list
        cfg = compose("train", [f"{group}={option}"])
        assert isinstance(to_dataclass(cfg, TrainConfig), TrainConfig)
        cls = _nested(TrainConfig, group)
        mapping = OmegaConf.to_container(cfg[group], resolve=True)
        yaml, fields = yaml_leaves(mapping, cls), dataclass_leaves(cls)
    where = Path("conf", group, f"{option}.yaml")
    unknown, absent = sorted(yaml.keys() - fields.keys()), sorted(fields.keys() - yaml.keys())
    assert unknown == [], f"{where}: keys {cls.__name__} lacks: {unknown}"
    assert absent == [], f"{where} lacks {cls.__name__} fields {absent}"
