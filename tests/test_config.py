import pytest

from reportgen.config import ExperimentConfig, apply_overrides, load_config, save_config
from reportgen.errors import ConfigError


def test_yaml_round_trip_and_overrides(tmp_path):
    cfg = ExperimentConfig()
    cfg.model.encoder.name = "test_vit"
    save_config(cfg, tmp_path / "c.yaml")
    loaded = load_config(tmp_path / "c.yaml", ["--train.lr=0.01", "--model.decoder.name=lstm", "--train.bf16=true"])
    assert loaded.model.encoder.name == "test_vit"
    assert loaded.train.lr == 0.01 and loaded.train.bf16 is True
    assert loaded.model.decoder.name == "lstm"


def test_int_accepted_for_float_and_lists_of_specs(tmp_path):
    (tmp_path / "c.yaml").write_text("train: {lr: 1}\ndata:\n  text_labels:\n    - {name: iu_xray, root: x}\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.data.text_labels[0].name == "iu_xray"


@pytest.mark.parametrize(
    "text, message",
    [
        ("train: {lrr: 1}", "unknown key"),
        ("train: {epochs: many}", "expected int"),
        ("train: [1, 2]", "expected a mapping"),
        ("train: {bf16: 3}", "true/false"),
    ],
)
def test_bad_yaml_values_name_the_key(tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "c.yaml")


def test_bad_overrides():
    with pytest.raises(ConfigError, match="no key"):
        apply_overrides(ExperimentConfig(), ["--train.nope=1"])
    with pytest.raises(ConfigError, match="--section.key=value"):
        apply_overrides(ExperimentConfig(), ["--train.lr"])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
