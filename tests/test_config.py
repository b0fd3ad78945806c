"""The config loads, overrides and names the field that is wrong."""

import pytest

from cluster.config import dump_config, load_config, parse_override
from cluster.config.errors import ConfigError


def test_demo_config_loads_and_round_trips(tmp_path):
    cfg = load_config()
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


def test_set_override_changes_field():
    cfg = load_config(None, ["data.min_words=12", "data.ingest.extractor=trafilatura"])
    assert cfg.data.min_words == 12
    assert cfg.data.ingest.extractor == "trafilatura"


def test_flag_values_override_and_none_is_ignored():
    cfg = load_config(None, [], {"data.crawl.max_pages": 7, "data.crawl.rate": None})
    assert cfg.data.crawl.max_pages == 7
    assert cfg.data.crawl.rate == load_config().data.crawl.rate


def test_unknown_field_names_field_and_allowed_values():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.min_wrds=3"])
    message = str(err.value)
    assert "data.min_wrds" in message and "min_words" in message


def test_invalid_literal_names_allowed_values():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.ingest.extractor=lynx"])
    assert "data.ingest.extractor" in str(err.value)
    assert "resiliparse" in str(err.value) and "trafilatura" in str(err.value)


def test_invalid_type_names_field():
    with pytest.raises(ConfigError, match="data.crawl.max_pages"):
        load_config(None, ["data.crawl.max_pages=many"])


def test_rl_at_temperature_zero_is_refused_with_the_reason():
    with pytest.raises(ConfigError, match=r"rlhf.temperature.*no exploration"):
        load_config(None, ["rlhf.temperature=0"])


def test_holding_out_every_prompt_or_preference_is_refused_up_front():
    for field in ("rlhf.heldout_fraction", "lifecycle.judge_fraction"):
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            load_config(None, [f"{field}=1"])


def test_missing_config_file_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_parse_override_requires_equals():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("data.min_words")
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
