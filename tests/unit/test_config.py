"""params.yaml loading: every error names the key and the file."""

from __future__ import annotations

import pytest
import yaml

from beatedit.config import Config, ConfigError, config_to_dict, load_config
from tests.conftest import REPO


def write(tmp_path, data) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(path)


def defaults() -> dict:
    return config_to_dict(Config())


def test_repo_params_yaml_is_valid():
    cfg = load_config(REPO / "params.yaml")
    assert isinstance(cfg, Config)


def test_defaults_round_trip(tmp_path):
    assert load_config(write(tmp_path, defaults())) == Config()


def test_unknown_key_is_named(tmp_path):
    data = defaults()
    data["env"]["windw_before"] = 3
    with pytest.raises(ConfigError, match=r"params.yaml.*env\.windw_before"):
        load_config(write(tmp_path, data))


def test_missing_key_is_named(tmp_path):
    data = defaults()
    del data["data"]["corpus"]["n_songs"]
    with pytest.raises(ConfigError, match=r"missing key\(s\) data\.corpus\.n_songs"):
        load_config(write(tmp_path, data))


def test_wrong_type_is_named(tmp_path):
    data = defaults()
    data["data"]["corpus"]["n_songs"] = "many"
    with pytest.raises(ConfigError, match=r"data\.corpus\.n_songs must be an integer"):
        load_config(write(tmp_path, data))


def test_bad_literal_is_named(tmp_path):
    data = defaults()
    data["device"] = "tpu"
    with pytest.raises(ConfigError, match=r"device must be one of"):
        load_config(write(tmp_path, data))


def test_malformed_yaml_names_file(tmp_path):
    path = write(tmp_path, "seed: [unclosed\n")
    with pytest.raises(ConfigError, match=r"params.yaml: not valid YAML"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_overrides(tmp_path):
    cfg = load_config(write(tmp_path, defaults()), ["env.window_before=3", "device=cpu"])
    assert cfg.env.window_before == 3 and cfg.device == "cpu"
    with pytest.raises(ConfigError, match="unknown key env.nope"):
        load_config(write(tmp_path, defaults()), ["env.nope=1"])


def test_own_folder_requires_flag(tmp_path):
    data = defaults()
    data["data"]["audio_dir"] = "/music"
    with pytest.raises(ConfigError, match="use_generated_corpus"):
        load_config(write(tmp_path, data))
    data["data"]["use_generated_corpus"] = False
    assert load_config(write(tmp_path, data)).data.audio_dir == "/music"
