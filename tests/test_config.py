import pytest

from stt.config import compose, conf_dir, to_dataclass
from stt.data.synth import SynthConfig
from stt.errors import ConfigError


def test_the_synth_yaml_matches_its_dataclass_defaults():
    assert to_dataclass(compose("synth"), SynthConfig) == SynthConfig()


def test_overrides_reach_nested_and_list_keys():
    cfg = to_dataclass(
        compose("synth", ["hours=2.5", "split_fractions.dev=0.2", "holdout_accents=[scottish]"]),
        SynthConfig,
    )
    assert cfg.hours == 2.5
    assert cfg.split_fractions["dev"] == 0.2
    assert cfg.holdout_accents == ["scottish"]


def test_unknown_key_is_a_config_error():
    with pytest.raises(ConfigError, match="nonsense"):
        compose("synth", ["nonsense=1"])


def test_wrong_type_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match="hours"):
        to_dataclass(compose("synth", ["hours=many"]), SynthConfig)


def test_conf_dir_can_be_moved_with_an_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("STT_CONF_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="no stt configuration"):
        conf_dir()
    (tmp_path / "synth.yaml").write_text("hours: 7\n")
    assert to_dataclass(compose("synth"), SynthConfig).hours == 7
