"""Hydra configuration, read once at the edge (the CLI) and handed down as dataclasses.

Library code never calls Hydra: the CLI composes ``conf/<name>.yaml`` with the user's
``key=value`` overrides, then :func:`to_dataclass` checks the result against the dataclass that
the library function takes.
"""

from __future__ import annotations

import os
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from stt.errors import ConfigError

T = TypeVar("T")


def conf_dir() -> Path:
    """The ``conf/`` folder: ``$STT_CONF_DIR`` if set, else the one beside the package."""
    env = os.environ.get("STT_CONF_DIR")
    path = Path(env) if env else Path(__file__).resolve().parent.parent / "conf"
    if not (path / "synth.yaml").is_file():
        raise ConfigError(f"{path}: no stt configuration here (set STT_CONF_DIR to the conf/ dir)")
    return path


def compose(config_name: str, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """``conf/<config_name>.yaml`` with Hydra-style overrides (``a.b=1``, ``+new=2``, ``~key``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    for override in overrides:
        if "=" not in override and not override.startswith("~"):
            raise ConfigError(f"override {override!r} is not of the form key=value")
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        message = " ".join(str(exc).split())
        raise ConfigError(f"config {config_name!r}: {message}") from None


def to_dataclass(cfg: DictConfig, cls: type[T]) -> T:
    """Validate ``cfg`` against dataclass ``cls`` (types, unknown keys) and build it."""
    assert is_dataclass(cls)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), cfg)
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        message = " ".join(str(exc).split())
        known = ", ".join(f.name for f in fields(cls))
        raise ConfigError(f"{message} (known keys: {known})") from None
