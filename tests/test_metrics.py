"""Run-directory outputs: metrics.jsonl, atomic summary.json, curves PNG, progress lines."""

import json
import os
import sys

import numpy as np
import pytest

from hpcdist import metrics
from hpcdist.metrics import MetricsLogger, plot_curves, read_metrics, write_summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def epoch_records(n: int) -> list[dict]:
    return [
        {
            "epoch": e,
            "train_loss": 2.0 / (e + 1),
            "val_loss": 2.2 / (e + 1),
            "train_acc": 1 - 0.5 / (e + 1),
            "val_acc": 1 - 0.6 / (e + 1),
            "lr": 0.1,
        }
        for e in range(n)
    ]


def test_jsonl_lines_parse_and_match(tmp_path):
    logged = epoch_records(4)
    with MetricsLogger(tmp_path) as log:
        for r in logged[:2]:
            log.log(r)
        # flushed at each log(): a reader sees the lines before close()
        assert [
            json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()
        ] == logged[:2]
        log.log(logged[2])
    with MetricsLogger(tmp_path) as log:  # a resumed run appends
        log.log({**logged[3], "lr": np.float32(0.1), "n": np.int64(3)})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4
    assert [json.loads(x) for x in lines[:3]] == logged[:3]
    last = json.loads(lines[3])
    assert last["n"] == 3 and last["lr"] == pytest.approx(0.1) and last["epoch"] == 3


def test_unserializable_record_writes_nothing(tmp_path):
    with MetricsLogger(tmp_path) as log:
        log.log({"epoch": 0})
        with pytest.raises(TypeError, match="not JSON serializable"):
            log.log({"epoch": 1, "bad": object()})
    assert read_metrics(tmp_path) == [{"epoch": 0}]


def test_disabled_logger_writes_no_file(tmp_path):
    log = MetricsLogger(tmp_path / "run", enabled=False)
    log.log({"epoch": 0})
    log.close()
    assert not (tmp_path / "run").exists()


def test_read_metrics_skips_torn_last_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0}\n{"epoch": 1}\n{"epo')
    assert read_metrics(tmp_path) == [{"epoch": 0}, {"epoch": 1}]


def test_summary_written_atomically(tmp_path, monkeypatch):
    summary = {"best_val_acc": 0.93, "epochs": 5, "ranks": 4, "config": {"lr": 0.1}}
    path = write_summary(tmp_path, summary)
    assert path == tmp_path / "summary.json"
    assert json.loads(path.read_text()) == summary

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(metrics.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        write_summary(tmp_path, {"best_val_acc": 0.1})
    assert json.loads(path.read_text()) == summary  # the old summary is untouched
    assert os.listdir(tmp_path) == ["summary.json"]  # and no temp file is left


def test_plot_curves_writes_a_valid_png(tmp_path):
    import matplotlib.image

    with MetricsLogger(tmp_path) as log:
        for r in epoch_records(6):
            log.log(r)
    path = plot_curves(tmp_path)
    assert path == tmp_path / "curves.png"
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.shape == (400, 1000, 4)  # figsize (10, 4) at 100 dpi, RGBA
    assert image.min() < image.max()  # something was drawn


def test_plot_curves_without_matplotlib_warns(tmp_path, monkeypatch):
    MetricsLogger(tmp_path).log({"epoch": 0, "train_loss": 1.0})
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.warns(UserWarning, match="matplotlib is not available"):
        assert plot_curves(tmp_path) is None
    assert not (tmp_path / "curves.png").exists()


def _planted(tmp_path, name: str):
    """A file of the running user, and a link to it planted in the run dir under `name`."""
    run, victim = tmp_path / "run", tmp_path / "precious.txt"
    run.mkdir(exist_ok=True)
    victim.write_text("mine")
    (run / name).symlink_to(victim)
    return run, victim


@pytest.mark.parametrize("name", ["curves.png", "summary.json", "metrics.jsonl-rewrite"])
def test_outputs_replace_a_planted_link_never_write_through_it(tmp_path, name):
    """Was: curves.png, a link to the user's file, had the plot written over that file."""
    real = name.removesuffix("-rewrite")
    run, victim = _planted(tmp_path, real)
    if real == "curves.png":
        with MetricsLogger(tmp_path / "src") as log:
            for r in epoch_records(3):
                log.log(r)
        plot_curves(tmp_path / "src", out=run / real)
    elif real == "summary.json":
        write_summary(run, {"status": "finished"})
    else:  # resume cuts metrics.jsonl back: a new file replaces the link
        victim.write_text('{"epoch": 1}\n{"epoch": 2}\n')
        assert metrics.truncate_metrics(run, last_epoch=1) == 1
        assert (run / real).read_text() == '{"epoch": 1}\n'
    before = '{"epoch": 1}\n{"epoch": 2}\n' if real == "metrics.jsonl" else "mine"
    assert victim.read_text() == before
    assert not (run / real).is_symlink() and (run / real).stat().st_size > 0


def test_metrics_log_refuses_a_planted_link(tmp_path):
    run, victim = _planted(tmp_path, "metrics.jsonl")
    with pytest.raises(OSError, match="metrics.jsonl is a symbolic link: refusing"):
        MetricsLogger(run)
    assert victim.read_text() == "mine"


def test_every_output_file_gets_the_same_mode(tmp_path):
    """Was: summary.json 0600 (mkstemp's mode), metrics.jsonl and curves.png 0644."""
    with MetricsLogger(tmp_path) as log:
        for r in epoch_records(3):
            log.log(r)
    write_summary(tmp_path, {"status": "finished"})
    plot_curves(tmp_path)
    metrics.truncate_metrics(tmp_path, last_epoch=1)  # rewritten through a temporary file
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    mask = os.umask(0o022)
    os.umask(mask)
    assert modes == dict.fromkeys(["metrics.jsonl", "summary.json", "curves.png"], 0o666 & ~mask)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a directory to another user")
def test_run_dir_of_another_user_is_refused_when_anyone_may_write(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chown(shared, 4321, 4321)
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match=r"belongs to uid 4321 and anyone may write"):
        MetricsLogger(shared)
    shared.chmod(0o755)
    with pytest.warns(UserWarning, match="belongs to uid 4321, not to you"):
        MetricsLogger(shared).close()
