"""Configuration: defaults < TOML < flags, and errors that name the setting."""

import argparse

import pytest

from hpcdist import config


def parse(*flags):
    p = argparse.ArgumentParser()
    config.add_arguments(p)
    return config.from_args(p.parse_args(list(flags)))


def test_defaults():
    cfg = parse()
    assert cfg == config.TrainConfig()


def test_toml_then_flags(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('[train]\nepochs = 7\nlr = 0.2\nhidden = [32, 16]\ncompression = "bf16"\n')
    cfg = parse("--config", str(toml), "--epochs", "3")
    assert (cfg.epochs, cfg.lr, cfg.hidden, cfg.compression) == (3, 0.2, [32, 16], "bf16")


def test_hidden_flag():
    assert parse("--hidden", "64,32,16").hidden == [64, 32, 16]
    with pytest.raises(SystemExit):
        parse("--hidden", "64,x")


@pytest.mark.parametrize(
    "text, message",
    [
        ("epochs = 0", "epochs must be >= 1"),
        ('compression = "int8"', "compression must be one of"),
        ("dropout = 1.5", "dropout must be in [0, 1)"),
        ("warmup = 3", "unknown setting(s) ['warmup']"),
        ("epochs = ", "not valid TOML"),
    ],
)
def test_bad_settings_are_named(tmp_path, text, message):
    toml = tmp_path / "bad.toml"
    toml.write_text(f"[train]\n{text}\n")
    with pytest.raises(ValueError) as e:
        parse("--config", str(toml))
    assert message in str(e.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        parse("--config", str(tmp_path / "nope.toml"))
