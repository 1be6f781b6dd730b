"""The demo's wall time from an empty home, phase by phase, against an earlier commit.

Runs ``skillbank demo`` (its embedded defaults) twice on this machine, one after the other,
each from an empty library home and with nothing else of this script running: first the
code of ``--baseline`` (a commit of this repository, checked out into a temporary git
worktree and put first on ``PYTHONPATH``), then the working tree. Each run's wall time is
timed around the whole command (interpreter start-up included); the phases come from the
``phase_seconds`` that ``summary.json`` records (absent in code that did not record them).
Also kept: the targets (skills ≥ 0.90, base ≤ 0.20, router ≥ 0.95 normalised) and the
process CPU time (user + sys of the command and its workers), which bounds what two cores
can do: wall ≥ CPU / 2.

    .venv/bin/python benchmarks/demo_wall.py                      # ~10 min on 2 cores
    .venv/bin/python benchmarks/demo_wall.py --baseline e83e0d4 --skip-baseline

It prints a table and writes ``benchmarks/results/demo_wall.json``. Run it on a quiet
machine: the demo uses both cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_demo(src: Path | None, work: Path) -> dict:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-c", "from skillbank.cli import main; main()",
           "--home", str(work / "home"), "demo", "--out", str(work / "out")]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = json.loads((work / "out" / "summary.json").read_text())
    router = summary.get("composition", {}).get("methods", {}).get("router", {})
    norm = router.get("normalised") or {}
    return {"wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
            "phase_seconds": summary.get("phase_seconds"),
            "skills_exact_match": {k: v["exact_match"] for k, v in summary["skills"].items()},
            "base_exact_match_max": max(v["base_exact_match"] for v in summary["skills"].values()),
            "router_normalised_min": min(norm.values()) if norm else None,
            "router_train_seconds": router.get("train_seconds"),
            "all_targets_met": summary["all_targets_met"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", default="e83e0d4", help="commit to compare against")
    ap.add_argument("--skip-baseline", action="store_true", help="time the working tree only")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "demo_wall.json"))
    args = ap.parse_args()
    results = {"machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg()}}
    with tempfile.TemporaryDirectory(prefix="demo-wall-") as tmp:
        tmp = Path(tmp)
        if not args.skip_baseline:
            tree = tmp / "baseline"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree),
                            args.baseline], check=True, capture_output=True)
            try:
                results["baseline"] = {"commit": args.baseline,
                                       **run_demo(tree / "src", tmp / "run-baseline")}
            finally:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(tree)], check=False, capture_output=True)
        results["current"] = run_demo(None, tmp / "run-current")
    if "baseline" in results:
        results["wall_ratio_current_over_baseline"] = round(
            results["current"]["wall_seconds"] / results["baseline"]["wall_seconds"], 3)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    for which in ("baseline", "current"):
        if which in results:
            r = results[which]
            print(f"{which:9s} wall {r['wall_seconds']:7.1f} s  cpu {r['cpu_seconds']:7.1f} s  "
                  f"targets met {r['all_targets_met']}  router min {r['router_normalised_min']}"
                  f"  phases {r['phase_seconds']}")
    if "wall_ratio_current_over_baseline" in results:
        print(f"current / baseline wall: {results['wall_ratio_current_over_baseline']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
