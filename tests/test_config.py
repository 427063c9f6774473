"""Config: YAML files in conf/ load, overrides apply, bad values name their key."""

from __future__ import annotations

import pytest

from samplemix_spark.config import build_config, load_config
from samplemix_spark.errors import ConfigError

from .conftest import REPO


@pytest.mark.parametrize("name", ["local.yaml", "synthetic.yaml", "databricks.yaml", "emr.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(REPO / "conf" / name)
    assert cfg.mixing.alpha == 0.8 and cfg.mixing.tau == 0.2


def test_overrides_parse_yaml_values():
    cfg = load_config(REPO / "conf" / "local.yaml", ["mixing.alpha=0.25", "mixing.target_tokens=5000",
                                                     "ingest.sources=[a, b]"])
    assert cfg.mixing.alpha == 0.25
    assert cfg.mixing.target_tokens == 5000.0 and cfg.mixing.target_fraction is None
    assert cfg.ingest.sources == ["a", "b"]


@pytest.mark.parametrize("override, key", [
    ("mixing.alpha=1.5", "mixing.alpha"),
    ("mixing.alpha=-0.1", "mixing.alpha"),
    ("mixing.tau=0", "mixing.tau"),
    ("mixing.tau=-1", "mixing.tau"),
    ("mixing.target_fraction=0", "mixing.target_fraction"),
    ("mixing.target_tokens=-10", "mixing.target_tokens"),
    ("mixing.alpah=0.5", "mixing.alpah"),
    ("engine.kind=yarn", "engine.kind"),
    ("tables.format=csv", "tables.format"),
    ("mixing.seed=abc", "mixing.seed"),
    ("mixing.shuffle=maybe", "mixing.shuffle"),
    ("mixing.export_format=jsonl", "mixing.export_path"),
])
def test_invalid_values_are_refused_by_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(REPO / "conf" / "local.yaml", [override])


def test_both_budgets_refused():
    with pytest.raises(ConfigError, match="target_tokens"):
        load_config(REPO / "conf" / "local.yaml", ["mixing.target_tokens=100", "mixing.target_fraction=0.5"])


def test_column_methods_need_their_columns():
    with pytest.raises(ConfigError, match="ingest.quality_column"):
        build_config({"ingest": {"sources": ["x"]}, "quality": {"method": "column"}})


def test_missing_config_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("conf/nope.yaml")


def test_every_proxy_preset_the_trainer_has_is_a_valid_setting():
    from samplemix_spark.config import PROXY_PRESETS
    from samplemix_spark.models.byte_lm import PRESETS

    assert sorted(PROXY_PRESETS) == sorted(PRESETS)
    for name in PRESETS:
        assert build_config({"evaluate": {"preset": name}}).evaluate.preset == name


def test_a_mistyped_key_or_choice_gets_the_closest_valid_name():
    with pytest.raises(ConfigError, match=r"unknown config key 'mixing\.alfa' \(did you mean 'alpha'\?\); "
                                          r"known keys here: .*alpha"):
        load_config(None, ["mixing.alfa=0.5"])
    with pytest.raises(ConfigError, match=r"'diversity\.method': got 'kmean' \(did you mean 'kmeans'\?\), "
                                          "expected one of kmeans, column"):
        load_config(None, ["diversity.method=kmean"])
    with pytest.raises(ConfigError) as nothing_close:
        load_config(None, ["mixing.zzzz=1"])
    assert "did you mean" not in str(nothing_close.value)
