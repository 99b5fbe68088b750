"""`python -m hpcdist.study --quick` end to end: six rows from its own runs, and the plots."""

import json
import subprocess
import sys

import pytest

from hpcdist.launcher import ROOT, clean_env

pytestmark = pytest.mark.launcher


def test_quick_study_fills_all_six_rows_from_its_runs(tmp_path):
    out = tmp_path / "study"
    # examples/study_quick.sh runs `python -m hpcdist.study --quick --run-dir OUT`
    env = clean_env({"HPCDIST_CACHE": str(tmp_path / "cache"), "PYTHON": sys.executable})
    res = subprocess.run(
        ["sh", "examples/study_quick.sh", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    report = (out / "report.md").read_text()
    assert f"table and plots: {out}/report.md" in res.stdout
    runs = json.loads((out / "runs.json").read_text())
    assert [r["form"] for r in runs] == list("abcdef")
    for r in runs:
        assert r["error"] == "", r
        # the row shows what that run's own trainer wrote, not a figure of the study's making
        summary = json.loads((out / "runs" / f"{r['form']}-seed0" / "summary.json").read_text())
        final = summary["final"]["val_accuracy"]
        row = next(ln for ln in report.splitlines() if ln.startswith(f"| ({r['form']}) "))
        assert "| 1/1 |" in row and f"| {final:.4f} |" in row, row
        assert r["steps"] == summary["steps"] > 0
        ps = summary.get("parameter_server")
        if ps:  # what the ps tasks took in (the pushes), per worker and step
            sent = sum(t["bytes_in"] for t in ps["tasks"]) / summary["data_parallel_size"]
        else:  # rank 0's own count (a split model's activations included)
            sent = summary["bytes_on_wire"]
        assert r["bytes_per_step"] == pytest.approx(sent / summary["steps"]) and sent > 0
        assert bool(r["ps"]) == (r["form"] in "bcd")
    for name in ("accuracy_vs_time.png", "accuracy_vs_steps.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    conclusion = report.split("## Conclusion")[1].split("## Plots")[0]
    assert conclusion.strip() in res.stdout  # the example prints the generated conclusion
    assert (
        "fastest here" in conclusion
        or "tie as the fastest" in conclusion
        or ("No form reached" in conclusion)
    )
    # the report can be rebuilt from runs.json alone, to the same table
    again = subprocess.run(
        [sys.executable, "-m", "hpcdist.study", "--quick", "--run-dir", str(out), "--report-only"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert again.returncode == 0, again.stderr
    table = report.split("## Conclusion")[0].split("## Results")[1]
    assert table in (out / "report.md").read_text()
