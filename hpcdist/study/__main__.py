"""python -m hpcdist.study: train the six forms, write D/report.md with its table and plots."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

from . import run as run_mod
from .forms import Plan, forms
from .writer import write

#: --quick: CI size (a minute or two on two cores).
QUICK = {"epochs": 4, "seeds": 1, "target": 0.9}
FULL = {"epochs": 20, "seeds": 5, "target": 0.95}


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hpcdist.study", description=__doc__)
    p.add_argument("--quick", action="store_true", help="CI size: 4 epochs, 1 seed, target 0.9")
    p.add_argument("--run-dir", type=Path, default=Path("runs/study"), help="where it all goes")
    p.add_argument("--seeds", type=int, help=f"seeds per form (default {FULL['seeds']})")
    p.add_argument("--epochs", type=int, help=f"epochs per run (default {FULL['epochs']})")
    p.add_argument("--target", type=float, help=f"validation accuracy (default {FULL['target']})")
    p.add_argument("--workers", type=int, default=2, help="computing ranks per form (default 2)")
    p.add_argument("--batch-size", type=int, default=16, help="samples per worker per step")
    p.add_argument("--straggler", action="store_true", help="the last worker sleeps each step")
    p.add_argument("--straggle-seconds", type=float, default=0.005, help="its sleep per step")
    p.add_argument("--forms", default="a,b,c,d,e,f", help="which forms, e.g. a,e,f")
    p.add_argument("--synthetic", type=int, default=0, help="N generated samples, not digits")
    p.add_argument("--timeout", type=float, default=600, help="seconds one run may take")
    p.add_argument("--report-only", action="store_true", help="rewrite report.md from runs.json")
    args = p.parse_args(argv)
    base = QUICK if args.quick else FULL
    for k, v in base.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.seeds < 1 or args.epochs < 1:
        p.error(f"--seeds and --epochs must be >= 1 (got {args.seeds}, {args.epochs})")
    return args


def header(argv: list[str], load: tuple, started: str) -> str:
    """Command, date, machine and load: what a reader needs to weigh the figures."""
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in _cpuinfo() if ln.startswith("model name")), "?"
    )
    return (
        f"\n- command: `python -m hpcdist.study {shlex.join(argv)}`\n"
        f"- date: {started} to {_now()}\n"
        f"- machine: {platform.node()}, {os.cpu_count()} CPU(s) ({cpu}), Python "
        f"{platform.python_version()}\n- load average (1, 5, 15 min) at start "
        f"{_load(load)}, at end {_load(os.getloadavg())}\n"
    )


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def _load(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def run_all(args: argparse.Namespace, d: Path) -> list:
    """Every form at every seed, one job after another; runs.json rewritten after each."""
    plan = Plan(workers=args.workers, batch=args.batch_size, keys=tuple(args.forms.split(",")))
    common = ["--epochs", str(args.epochs), "--no-progress", "--checkpoint-every", "0"]
    common += ["--timeout", "120"]
    if args.synthetic:
        common += ["--synthetic", str(args.synthetic)]
    runs = []
    for form in forms(plan):
        for seed in range(args.seeds):
            r = run_mod.run_form(
                form,
                seed=seed,
                common=common,
                run_dir=d / "runs" / f"{form.key}-seed{seed}",
                straggle_s=args.straggle_seconds if args.straggler else 0.0,
                timeout=args.timeout,
            )
            status = r.error or f"final accuracy {r.final_accuracy:.4f}"
            print(f"study: ({form.key}) {form.name}, seed {seed}: {status}", flush=True)
            runs.append(r)
            run_mod.save(runs, d / "runs.json")
    return runs


def reread(d: Path) -> list:
    """--report-only: the saved runs, their figures read again from their run directories."""
    runs = run_mod.load(d / "runs.json")
    for r in runs:
        where = d / "runs" / f"{r.form}-seed{r.seed}"
        if r.ok and (where / "summary.json").exists():
            r.epochs = []
            run_mod.read_outputs(r, where)
    return runs


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    d: Path = args.run_dir
    d.mkdir(parents=True, exist_ok=True)
    load, started = os.getloadavg(), _now()
    runs = reread(d) if args.report_only else run_all(args, d)
    kept = d / "header.md"  # the runs' command, machine and load, kept for --report-only
    if not args.report_only or not kept.exists():
        kept.write_text(header(argv, load, started))
    path = write(runs, target=args.target, directory=d, header=kept.read_text())
    print(f"study: {path}")
    failed = [r for r in runs if not r.ok]
    if failed:
        print(f"study: {len(failed)} run(s) failed; their rows say why", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
