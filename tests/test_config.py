"""Configuration: defaults < TOML < flags, one check per field, and errors that name the setting."""

import argparse
import dataclasses
import subprocess
import sys

import pytest
from launch import ROOT, clean_env

from hpcdist import config
from hpcdist.config import TrainConfig, setting, validate
from hpcdist.exchange import registry

DEFAULTS = {
    "data": None,
    "synthetic": 0,
    "synthetic_features": 784,
    "synthetic_classes": 10,
    "epochs": 40,
    "batch_size": 16,
    "lr": 0.05,
    "reference_batch": 128,
    "warmup_epochs": 2.0,
    "schedule": "cosine",
    "optimizer": "momentum",
    "momentum": 0.9,
    "weight_decay": 0.0001,
    "model": "mlp",
    "hidden": [128, 64],
    "activation": "relu",
    "dropout": 0.0,
    "exchange": "allreduce",
    "compression": "none",
    "ps": 0,
    "replicas_to_aggregate": 0,
    "staleness": 4,
    "staleness_policy": "none",
    "async_warmup": 0,
    "sharding": "greedy",
    "error_feedback": False,
    "compress_within_node": False,
    "topology": "auto",
    "bucket_bytes": None,
    "overlap": False,
    "device": "auto",
    "strict_placement": False,
    "gpu_memory_fraction": None,
    "seed": 0,
    "run_dir": None,
    "overwrite": False,
    "resume": False,
    "checkpoint_every": 1,
    "keep_checkpoints": 3,
    "log_device_placement": False,
    "timeline": False,
    "shuffle_buffer": 1024,
    "reader_threads": 2,
    "val_fraction": 0.2,
    "progress": True,
    "max_steps": 0,
    "timeout": None,
    "model_parallel": "none",
    "mp_size": 2,
    "micro_batches": 4,
    "pipeline_schedule": "1f1b",
}

# Every flag and the default its help shows (the flags that existed before the
# generated parser keep their spelling: --no-progress, --resume, --hidden ...).
FLAGS = {
    "--data": "the handwritten digits scikit-learn ships",
    "--synthetic": "0",
    "--synthetic-features": "784",
    "--synthetic-classes": "10",
    "--epochs": "40",
    "--batch-size": "16",
    "--lr": "0.05",
    "--reference-batch": "128",
    "--warmup-epochs": "2.0",
    "--schedule": "cosine",
    "--optimizer": "momentum",
    "--momentum": "0.9",
    "--weight-decay": "0.0001",
    "--model": "mlp",
    "--hidden": "128,64",
    "--activation": "relu",
    "--dropout": "0.0",
    "--exchange": "allreduce",
    "--compression": "none",
    "--ps": "0",
    "--replicas-to-aggregate": "0",
    "--staleness": "4",
    "--staleness-policy": "none",
    "--async-warmup": "0",
    "--sharding": "greedy",
    "--error-feedback": "error_feedback = false",
    "--compress-within-node": "compress_within_node = false",
    "--topology": "auto",
    "--bucket-bytes": "the exchange's measured default",
    "--overlap": "overlap = false",
    "--device": "auto",
    "--strict-placement": "strict_placement = false",
    "--gpu-memory-fraction": "an equal share when ranks share a GPU, else grow on demand",
    "--seed": "0",
    "--run-dir": "a new runs/<UTC date>-<time>, and runs/latest pointed at it (--resume: that run)",
    "--overwrite": "overwrite = false",
    "--resume": "resume = false",
    "--checkpoint-every": "1",
    "--keep-checkpoints": "3",
    "--log-device-placement": "log_device_placement = false",
    "--timeline": "timeline = false",
    "--shuffle-buffer": "1024",
    "--reader-threads": "2",
    "--val-fraction": "0.2",
    "--no-progress": "progress = true",
    "--max-steps": "0",
    "--timeout": "$HPCDIST_TIMEOUT, else $HPCDIST_EXCHANGE_TIMEOUT, else 300",
    "--model-parallel": "none",
    "--mp-size": "2",
    "--micro-batches": "4",
    "--pipeline-schedule": "1f1b",
}


def parser():
    p = argparse.ArgumentParser(prog="python -m hpcdist.train")
    config.add_arguments(p)
    return p


def parse(*flags):
    return config.from_args(parser().parse_args(list(flags)))


def from_toml(tmp_path, text, *flags):
    toml = tmp_path / "run.toml"
    toml.write_text(f"[train]\n{text}\n")
    return parse("--config", str(toml), *flags)


def test_defaults():
    """Planted bug it catches: a changed default; DEFAULTS is written out, where comparing
    with TrainConfig() compared the code with itself."""
    assert parse().to_dict() == DEFAULTS
    assert type(parse().lr) is float and type(parse().epochs) is int


def test_defaults_then_toml_then_flags(tmp_path):
    text = 'epochs = 7\nlr = 0.2\nhidden = [32, 16]\ncompression = "bf16"\nseed = 4'
    cfg = from_toml(tmp_path, text, "--epochs", "3", "--seed", "5", "--no-progress")
    assert (cfg.epochs, cfg.seed, cfg.progress) == (3, 5, False)  # flags
    assert (cfg.lr, cfg.hidden, cfg.compression) == (0.2, [32, 16], "bf16")  # TOML
    assert (cfg.batch_size, cfg.optimizer, cfg.timeout) == (16, "momentum", None)  # defaults


def test_toml_integer_for_a_float_setting(tmp_path):
    cfg = from_toml(tmp_path, "lr = 1\nwarmup_epochs = 0\ntimeout = 30")
    assert (cfg.lr, cfg.warmup_epochs, cfg.timeout) == (1.0, 0.0, 30.0)
    assert type(cfg.lr) is float and type(cfg.timeout) is float


def test_flag_values_and_spellings():
    cfg = parse("--hidden", "64,32,16", "--timeout", "2.5", "--resume", "--error-feedback")
    assert (cfg.hidden, cfg.timeout, cfg.resume, cfg.error_feedback) == (
        [64, 32, 16],
        2.5,
        True,
        True,
    )
    assert parse("--hidden", "64, 32").hidden == [64, 32]
    assert parse("--bucket-bytes", "4096", "--gpu-memory-fraction", "1").bucket_bytes == 4096


def test_hidden_as_text_in_toml(tmp_path):
    assert from_toml(tmp_path, 'hidden = "48,24"').hidden == [48, 24]


@pytest.mark.parametrize(
    "text",
    [
        "checkpoint_every = 0",
        "shuffle_buffer = 0",
        "dropout = 0.0",
        "momentum = 0.0",
        "gpu_memory_fraction = 1.0",
        "max_steps = 0",
        "seed = 0",
        "synthetic_classes = 2",
        "timeout = 0.001",
    ],
)
def test_edges_that_are_allowed(tmp_path, text):
    key, value = text.split(" = ")
    assert getattr(from_toml(tmp_path, text), key) == float(value)


# (TOML line, flag or None where a flag cannot say it, the start of the message)
BAD = [
    ('lr = "0.1"', None, "lr must be a finite number > 0"),
    ("lr = 0", "--lr=0", "lr must be a finite number > 0"),
    ("lr = -0.5", "--lr=abc", "lr must be a finite number > 0"),
    ("lr = inf", "--lr=nan", "lr must be a finite number > 0"),
    ('momentum = "fast"', "--momentum=fast", "momentum must be a finite number >= 0 and < 1"),
    ("momentum = 1.0", "--momentum=1", "momentum must be a finite number >= 0 and < 1"),
    ('epochs = "ten"', "--epochs=ten", "epochs must be an integer >= 1"),
    ("epochs = 3.7", "--epochs=3.7", "epochs must be an integer >= 1"),
    ("epochs = 0", "--epochs=0", "epochs must be an integer >= 1"),
    ("epochs = true", None, "epochs must be an integer >= 1"),
    ('resume = "no"', None, "resume must be true or false"),
    ("error_feedback = 1", None, "error_feedback must be true or false"),
    ("checkpoint_every = -1", "--checkpoint-every=-1", "checkpoint_every must be an integer >= 0"),
    ("batch_size = 0", "--batch-size=0", "batch_size must be an integer >= 1"),
    ("keep_checkpoints = 0", "--keep-checkpoints=0", "keep_checkpoints must be an integer >= 1"),
    ("reference_batch = 0", "--reference-batch=0", "reference_batch must be an integer >= 1"),
    ("weight_decay = -1e-4", "--weight-decay=-1", "weight_decay must be a finite number >= 0"),
    ("dropout = 1.0", "--dropout=1.5", "dropout must be a finite number >= 0 and < 1"),
    ("dropout = -0.1", "--dropout=-0.1", "dropout must be a finite number >= 0 and < 1"),
    ("warmup_epochs = -1", "--warmup-epochs=-1", "warmup_epochs must be a finite number >= 0"),
    ("val_fraction = 0", "--val-fraction=0", "val_fraction must be a finite number > 0 and < 1"),
    ("val_fraction = 1", "--val-fraction=1", "val_fraction must be a finite number > 0 and < 1"),
    (
        "gpu_memory_fraction = 0",
        "--gpu-memory-fraction=1.5",
        "gpu_memory_fraction must be a finite number > 0 and <= 1, or unset",
    ),
    ("bucket_bytes = 0", "--bucket-bytes=0", "bucket_bytes must be an integer > 0, or unset"),
    ("bucket_bytes = 1.5", "--bucket-bytes=1k", "bucket_bytes must be an integer > 0, or unset"),
    ("reader_threads = 0", "--reader-threads=0", "reader_threads must be an integer >= 1"),
    ("shuffle_buffer = -1", "--shuffle-buffer=-1", "shuffle_buffer must be an integer >= 0"),
    ("max_steps = -1", "--max-steps=-1", "max_steps must be an integer >= 0"),
    ("synthetic = -1", "--synthetic=-1", "synthetic must be an integer >= 0"),
    ("synthetic_features = 0", "--synthetic-features=0", "synthetic_features must be an integer"),
    ("synthetic_classes = 1", "--synthetic-classes=1", "synthetic_classes must be an integer >= 2"),
    ("seed = -1", "--seed=-1", "seed must be an integer >= 0"),
    ("timeout = 0", "--timeout=0", "timeout must be a finite number > 0, or unset"),
    ('timeout = "5"', "--timeout=soon", "timeout must be a finite number > 0, or unset"),
    ("timeout = -5", "--timeout=inf", "timeout must be a finite number > 0, or unset"),
    ("hidden = []", "--hidden=,", "hidden must be a non-empty list of integers >= 1"),
    ("hidden = [64, 0]", "--hidden=64,0", "hidden must be a non-empty list of integers >= 1"),
    ('hidden = "64,x"', "--hidden=64,x", "hidden must be a non-empty list of integers >= 1"),
    ("hidden = [1.5]", "--hidden=1.5", "hidden must be a non-empty list of integers >= 1"),
    ("hidden = 64", None, "hidden must be a non-empty list of integers >= 1"),
    ('compression = "int8"', "--compression=int8", "compression must be one of "),
    ('schedule = "linear"', "--schedule=linear", "schedule must be one of "),
    ('optimizer = "rmsprop"', "--optimizer=rmsprop", "optimizer must be one of "),
    ('activation = "gelu"', "--activation=gelu", "activation must be one of "),
    ('exchange = "ps"', "--exchange=ps", "exchange must be one of "),
    ("data = 3", None, "data must be a string, or unset"),
    ("run_dir = [1]", None, "run_dir must be a string"),
]


def _one_line(message: str, start: str) -> None:
    assert message.startswith(start), message
    assert ", got " in message and "\n" not in message, message


@pytest.mark.parametrize("text, flag, start", BAD, ids=[b[0] for b in BAD])
def test_bad_toml_setting_is_named(tmp_path, text, flag, start):
    with pytest.raises(ValueError) as e:
        from_toml(tmp_path, text)
    _one_line(str(e.value), start)


@pytest.mark.parametrize("text, flag, start", [b for b in BAD if b[1]], ids=lambda v: str(v))
def test_bad_flag_is_named(text, flag, start):
    with pytest.raises(ValueError) as e:
        parse(flag)
    _one_line(str(e.value), start)


def test_messages_say_what_is_accepted(tmp_path):
    with pytest.raises(ValueError) as e:
        from_toml(tmp_path, 'momentum = "fast"')
    assert str(e.value) == "momentum must be a finite number >= 0 and < 1, got 'fast'"
    with pytest.raises(ValueError) as e:
        parse("--epochs", "3.7")
    assert str(e.value) == "epochs must be an integer >= 1, got '3.7'"
    with pytest.raises(ValueError) as e:
        parse("--hidden", "64,x")
    assert str(e.value) == (
        "hidden must be a non-empty list of integers >= 1, such as [128, 64] or '128,64', "
        "got '64,x'"
    )
    with pytest.raises(ValueError) as e:
        from_toml(tmp_path, 'compression = "int8"')
    assert str(e.value) == "compression must be one of ['none', 'fp16', 'bf16'], got 'int8'"


def test_validate_a_config_built_in_python():
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0, got '0.1'$"):
        validate(TrainConfig(lr="0.1"))
    with pytest.raises(ValueError, match=r"^resume must be true or false, got 'no'$"):
        validate(TrainConfig(resume="no"))
    with pytest.raises(ValueError, match=r"^epochs must be an integer >= 1, got 3.7$"):
        validate(TrainConfig(epochs=3.7))
    cfg = validate(TrainConfig(hidden=(32,), lr=1, timeout=7))
    assert (cfg.hidden, cfg.lr, cfg.timeout) == ([32], 1.0, 7.0)


def test_from_dict():
    assert TrainConfig.from_dict({"epochs": 2, "hidden": "8"}).to_dict() == {
        **DEFAULTS,
        "epochs": 2,
        "hidden": [8],
    }
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['bogus'\]; known: \['activ"):
        TrainConfig.from_dict({"bogus": 1})


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "warmup = 3",
            "unknown setting(s) ['warmup']; known: ['activation', 'async_warmup', 'batch_size', ",
        ),
        ("epochs = ", "not valid TOML"),
        ("[train.extra]\nepochs = 3", "unknown setting(s) ['extra']"),
    ],
)
def test_bad_toml_files_are_named(tmp_path, text, message):
    toml = tmp_path / "bad.toml"
    toml.write_text(f"[train]\n{text}\n")
    with pytest.raises(ValueError) as e:
        parse("--config", str(toml))
    assert str(e.value).startswith(f"--config {toml}: ") and message in str(e.value)


def test_train_not_a_table_and_unreadable_config(tmp_path):
    toml = tmp_path / "flat.toml"
    toml.write_text("train = 5\n")
    with pytest.raises(ValueError, match="train must be a table"):
        parse("--config", str(toml))
    with pytest.raises(ValueError, match="cannot read it"):
        parse("--config", str(tmp_path))  # a directory
    with pytest.raises(ValueError, match="no such file"):
        parse("--config", str(tmp_path / "nope.toml"))


def test_help_lists_every_flag_with_its_default(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    text = " ".join(parser().format_help().split())
    assert "--config TOML" in text and "training (flags override --config)" in text
    for flag in FLAGS:
        assert f" {flag} " in text or f" {flag}=" in text, flag
    actions = {a.option_strings[0]: a for a in parser()._actions if a.option_strings}
    assert set(actions) == {"-h", "--config", *FLAGS}
    for flag, default in FLAGS.items():
        assert actions[flag].help.endswith(f"(default: {default})"), (flag, actions[flag].help)
        assert f"(default: {default})" in text, flag
    assert actions["--timeout"].metavar == "SECONDS"


def test_exchange_choices_are_the_registry(monkeypatch):
    actions = {a.dest: a for a in parser()._actions}
    assert actions["exchange"].metavar == "{" + ",".join(registry.names()) + "}"
    with pytest.raises(ValueError) as e:
        parse("--exchange", "nope")
    assert str(e.value) == f"exchange must be one of {registry.names()}, got 'nope'"
    monkeypatch.setitem(registry._ENTRIES, "ring-test", "hpcdist.exchange.ring:RingExchange")
    assert parse("--exchange", "ring-test").exchange == "ring-test"  # looked up when checked
    assert "ring-test" in {a.dest: a for a in parser()._actions}["exchange"].metavar


@dataclasses.dataclass
class Small:
    width: int = setting(3, "columns", ge=1)
    colour: str = setting("red", "paint", choices=("red", "blue"))
    quiet: bool = setting(False, "say less")
    talk: bool = setting(True, "say nothing")
    scale: float | None = setting(None, "factor", gt=0, unset="automatic")
    sizes: list[int] = setting([1, 2], "sizes", min_items=1)
    odd: int = setting(1, "spelled its own way", flag="--oddity", metavar="K")


def test_generated_parser_for_any_dataclass():
    p = argparse.ArgumentParser()
    config.add_fields(p.add_argument_group("small"), Small)
    flags = {a.option_strings[0]: a for a in p._actions if a.option_strings}
    assert set(flags) == {"-h", "--width", "--colour", "--quiet", "--no-talk", "--scale"} | {
        "--sizes",
        "--oddity",
    }
    assert flags["--scale"].help == "factor (default: automatic)"
    assert flags["--no-talk"].help == "say nothing (default: talk = true)"
    args = p.parse_args(["--width", "5", "--no-talk", "--sizes", "4,5", "--oddity", "9"])
    assert vars(args) == dict(
        width=5, colour=None, quiet=None, talk=False, scale=None, sizes=[4, 5], odd=9
    )
    small = Small(**{k: v for k, v in vars(args).items() if v is not None})
    config.check_fields(small)
    assert dataclasses.asdict(small) == dict(
        width=5, colour="red", quiet=False, talk=False, scale=None, sizes=[4, 5], odd=9
    )
    for bad, message in [
        (Small(width=0), "width must be an integer >= 1, got 0"),
        (Small(colour="green"), "colour must be one of ['red', 'blue'], got 'green'"),
        (Small(scale=-1.0), "scale must be a finite number > 0, or unset, got -1.0"),
        (Small(sizes=[]), "sizes must be a non-empty list of integers, such as [1, 2] or '1,2'"),
    ]:
        with pytest.raises(ValueError) as e:
            config.check_fields(bad)
        assert str(e.value).startswith(message)
    with pytest.raises(TypeError, match="unknown keywords"):
        setting(1, "typo", minimum=0)


@pytest.mark.parametrize(
    "toml, flags, start",
    [
        ('momentum = "fast"', [], "momentum must be a finite number >= 0 and < 1, got 'fast'"),
        ("epochs = 3", ["--epochs", "3.7"], "epochs must be an integer >= 1, got '3.7'"),
    ],
)
def test_train_refuses_a_bad_setting_in_one_line(tmp_path, toml, flags, start):
    bad = tmp_path / "bad.toml"
    bad.write_text(f"[train]\n{toml}\n")
    cmd = [sys.executable, "-m", "hpcdist.train", "--config", str(bad), *flags]
    cmd += ["--run-dir", str(tmp_path / "run")]
    env = clean_env({"HPCDIST_CACHE": str(tmp_path / "cache")})
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [f"hpcdist.train: error: {start}"], res.stderr
    assert not (tmp_path / "run").exists()
