"""run_suite's counting: every rank's log read, a failure on any rank counted and shown."""

import pytest
import run_suite

LOGS = {
    0: "....\n3 passed in 1.02s\n",
    1: "rank 1 traceback: AssertionError: 7 != 8\n=== 1 failed, 2 passed in 1.20s ===\n",
    2: "rank 2 was aborted before its summary\n",
}


def _write(logs, texts):
    logs.mkdir()
    for rank, text in texts.items():
        (logs / f"rank{rank}.log").write_text(text)


def test_summary_counts_reads_pytest_closing_lines():
    assert run_suite.summary_counts("x\n=== 2 failed, 5 passed, 1 error in 3.1s ===") == {
        "failed": 2, "passed": 5, "error": 1,
    }  # fmt: skip
    assert run_suite.summary_counts("12 passed, 3 skipped in 0.50s") == {
        "passed": 12, "skipped": 3,
    }  # fmt: skip
    assert run_suite.summary_counts("Fatal error in PMPI_Allreduce\n") is None


def test_a_failure_on_any_rank_is_counted_and_its_output_shown(tmp_path, capsys):
    """Planted bugs it catches: size_counts reading rank 0's log alone (rank 1's failure
    lost, the size green), or a rank without a summary line taken for a pass."""
    _write(tmp_path / "np3", LOGS)
    counts, failing = run_suite.size_counts(3, tmp_path / "np3")
    assert counts == {"passed": 3, "failed": 1}
    assert failing == {1: "1 failed or errors", 2: "no summary line (aborted or killed)"}
    shown = capsys.readouterr().out
    assert "AssertionError: 7 != 8" in shown and "aborted before its summary" in shown


@pytest.mark.parametrize("missing", [0, 1])
def test_a_job_that_ended_before_any_summary_counts_one_failure(tmp_path, missing):
    """No rank counted the failure that ended the job (an abort): one failure is added; a
    rank whose log does not exist at all is a failing rank."""
    texts = {0: "...\n", 1: "Abort(1) on rank 1\n"}
    del texts[missing]
    _write(tmp_path / "np2", texts)
    counts, failing = run_suite.size_counts(2, tmp_path / "np2")
    assert counts == {"failed": 1} and sorted(failing) == [0, 1]
