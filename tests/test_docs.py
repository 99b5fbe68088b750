"""Every snippet in README.md and docs/ is run, or says which test covers it, or why not.

Each fenced block in a language below (and each unlabelled block that is a
shell transcript, `$ ...`) is preceded by a marker line, invisible once
rendered:

    <!-- doc-test: run ranks=2 -->            run it (python under mpiexec; bash as a script)
    <!-- doc-test: run ranks=1 prelude=NAME --> with PRELUDES[NAME] run first (the names the
                                                  snippet assumes, e.g. a communicator)
    <!-- doc-test: covered tests/test_x.py::test_y -->  the test that runs these commands
    <!-- doc-test: skip needs a cluster's modules -->   what keeps it from running here

A block without a marker fails test_every_snippet_is_accounted_for, so a new
snippet cannot slip in untested.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from launch import ROOT, clean_env, run_mpi

LANGS = ("python", "bash", "sh", "toml")
MARK = re.compile(r"^<!-- doc-test: (run|covered|skip)\b(.*?)-->\s*$")
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Names a reference snippet assumes; run before it.
_MODEL = """
import numpy as np
import hpcdist
from mpi4py import MPI
from hpcdist import nn
worker_comm = MPI.COMM_WORLD
model = nn.mlp([8, 16, 3], seed=0)
opt = nn.Momentum(model.parameters(), lr=0.1)
rng = np.random.default_rng(worker_comm.rank)
batches = [(rng.standard_normal((4, 8), dtype=np.float32), rng.integers(0, 3, 4)) for _ in range(3)]
"""
PRELUDES = {
    "comm": "from mpi4py import MPI\nworker_comm = MPI.COMM_WORLD\n",
    "arrays": """
import numpy as np
x = np.arange(6.0)
a, b, c = np.ones(3, np.float32), np.ones((2, 2), np.float32), np.ones(5, np.float32)
params, optimizer_buffers = [np.ones(4)], [np.zeros(4)]
""",
    "model": _MODEL,
    "exchange": _MODEL
    + """
ex = hpcdist.AllreduceExchange(worker_comm)
ex.attach(model.parameters())
other_work = lambda: None
""",
    "nn": """
import numpy as np
n_ranks, spe = 1, 3
rng = np.random.default_rng(0)
batches = [(rng.standard_normal((8, 784), dtype=np.float32), rng.integers(0, 10, 8),
            np.ones(8, np.float32)) for _ in range(spe)]
""",
    "parallel": """
import numpy as np
from mpi4py import MPI
from hpcdist import nn, parallel
from hpcdist.guard import Guard
guard = Guard(MPI.COMM_WORLD)
rng = np.random.default_rng(0)  # the same batch on every rank of the group
x, y = rng.standard_normal((8, 64)), rng.integers(0, 10, 8)
""",
    "pipeline": """
import shutil
from mpi4py import MPI
from hpcdist import datasets
from hpcdist.data import HDF5Source, InputPipeline
from hpcdist.guard import Guard
worker_comm = MPI.COMM_WORLD
guard = Guard(worker_comm)
digits = datasets.digits(comm=worker_comm)
if worker_comm.rank == 0:
    shutil.copytree(digits / "train", "shards")
guard.barrier(what="the shards copied")
epoch = 0
eval_pipe = InputPipeline(
    HDF5Source(str(digits / "val")), 16, seed=0, comm=worker_comm, remainder="pad"
)
""",
    "trained": """
import subprocess, sys
from hpcdist.launcher import clean_env
train = ["-m", "hpcdist.train", "--epochs", "1", "--hidden", "32", "--no-progress"]
subprocess.run([sys.executable, *train], env=clean_env(), check=True, capture_output=True)
""",
}


@dataclass
class Snippet:
    path: Path
    line: int
    lang: str
    code: str
    kind: str | None  # run / covered / skip, None when unmarked
    args: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def option(self, name: str, default: str | None = None) -> str | None:
        for word in shlex.split(self.args):
            key, _, value = word.partition("=")
            if key == name:
                return value
        return default


def snippets(path: Path) -> list[Snippet]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        body = "\n".join(lines[i + 1 : end]) + "\n"
        lang = fence[1]
        if lang in LANGS or (not lang and body.lstrip().startswith("$ ")):
            before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            mark = MARK.match(before)
            kind, args = (mark[1], mark[2].strip()) if mark else (None, "")
            found.append(Snippet(path, i + 1, lang or "transcript", body, kind, args))
        i = end + 1
    return found


ALL = [s for doc in DOCS for s in snippets(doc)]


def test_every_snippet_is_accounted_for():
    missing = [s.where for s in ALL if s.kind is None]
    assert not missing, "snippets without a <!-- doc-test: ... --> marker:\n" + "\n".join(missing)
    bare = [s.where for s in ALL if s.kind == "skip" and not s.args]
    assert not bare, f"skip markers must say why: {bare}"


@pytest.mark.parametrize("s", [s for s in ALL if s.kind == "covered"], ids=lambda s: s.where)
def test_covering_tests_exist(s):
    refs = [word for word in s.args.split() if "::" in word]
    assert refs, f"{s.where}: 'covered' names no tests/...py::test_name"
    for ref in refs:
        file, _, name = ref.partition("::")
        text = (ROOT / file).read_text(encoding="utf-8")
        assert re.search(rf"^def {re.escape(name)}\(", text, re.M), f"{s.where}: no test {ref}"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A digits cache shared by the snippets (built once)."""
    env = {"HPCDIST_CACHE": str(tmp_path_factory.mktemp("cache"))}
    build = "from mpi4py import MPI; import hpcdist.datasets as d; d.digits(comm=MPI.COMM_SELF)"
    subprocess.run([sys.executable, "-c", build], env=clean_env(env), check=True, timeout=300)
    return env


@pytest.mark.launcher
@pytest.mark.parametrize(
    "s", [s for s in ALL if s.kind == "run" and s.lang != "toml"], ids=lambda s: s.where
)
def test_snippet_runs(s, tmp_path, cache):
    timeout = float(s.option("timeout", "300"))
    if s.lang == "python":
        script = tmp_path / "snippet.py"
        script.write_text(PRELUDES.get(s.option("prelude", ""), "") + s.code, encoding="utf-8")
        res = run_mpi(int(s.option("ranks", "1")), [str(script)], timeout, cache, cwd=tmp_path)
        output = res.output
    else:
        code = "\n".join(ln[2:] if ln.startswith("$ ") else ln for ln in s.code.splitlines())
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path, env=clean_env(cache),
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        res, output = proc, proc.stdout + proc.stderr
    assert res.returncode == 0, f"{s.where} failed:\n{output[-4000:]}"


@pytest.mark.parametrize(
    "s", [s for s in ALL if s.lang == "toml" and s.kind == "run"], ids=lambda s: s.where
)
def test_toml_snippets_are_valid_train_configs(s, tmp_path):
    from hpcdist import config

    path = tmp_path / "snippet.toml"
    path.write_text(s.code, encoding="utf-8")
    config.TrainConfig.from_dict(config.load_toml(path))


def test_the_settings_table_is_the_config():
    from hpcdist import config, settings

    text = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    begin, end = "<!-- settings-table:begin -->\n", "<!-- settings-table:end -->"
    table = text[text.index(begin) + len(begin) : text.index(end)]
    assert table == settings.markdown_table(config.TrainConfig), (
        "docs/training.md's settings table differs from TrainConfig: regenerate it with "
        "settings.markdown_table(config.TrainConfig)"
    )
