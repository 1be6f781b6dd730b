"""Executors: jobs per second of one evaluation grid in-process, on a local process pool
and on Ray, and what the Ray path costs per job.

What it measures. One sweep of evaluation jobs (subjects × tasks × seeds, ≥ 100 jobs,
each ``evaluate_model`` on ``--n`` held-out examples of one task, its row stored with
``Library.add_result``) run by ``sweep.run_sweep`` on

* **local**: in this process, one worker (the default executor);
* **local-pool**: ``--workers`` spawned processes on this machine;
* **ray**: a Ray cluster started on this machine (``num_cpus=--workers``), one actor per
  CPU, each with torch set to one thread;

each into a fresh copy of the library (so nothing is skipped as already done), timed from
the first job to the last. Worker start-up (process spawn / ``ray.init`` + actors importing
torch) is timed separately and reported, not counted in jobs/s. **Overhead per job** of
the Ray path is the mean wall time of a no-op job (a ``module:function`` kind that returns its
input) on Ray minus the same in-process, over ``--noop`` jobs: scheduling, serialising the
spec and result, and the library's per-job home check.

The subjects are the demo's strings base and its six LoRA skills copied from
``--source`` (default ``/work/demo-home``) into a scratch home (the source library is
only read); if it has none, a freshly initialised mini base is the only subject.

Run it from the repository root::

    .venv/bin/python benchmarks/executors.py            # ~3-4 min on 2 shared cores
    .venv/bin/python benchmarks/executors.py --n 20 --seeds 0,1,2 --workers 2

It prints a table and writes ``benchmarks/results/executors.json``. Throughput on this
machine is bounded by its 2 cores, which other processes share (the load average is
recorded); pool and Ray parallel figures can only beat in-process by using the second core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))

from skillbank.library import Library  # noqa: E402
from skillbank.run import Job, get_executor  # noqa: E402
from skillbank.sweep import run_sweep  # noqa: E402

TASKS = ["rot", "shift", "dedup", "drop", "swap", "dup"]
SKILLS = [f"strings-{t}" for t in TASKS]
NOOP = "executors:noop"  # this file, importable by every worker through PYTHONPATH


def scratch_home(source: Path, dest: Path) -> tuple[Path, list[str]]:
    """A new library with the source's strings base and demo skills (copied, not moved)."""
    with Library.open(dest) as lib:
        if (source / "catalog.sqlite").is_file():
            with Library.open(source) as src:
                names = [s for s in SKILLS if any(r.name == s for r in src.list())]
                if names:
                    first = src.get(names[0])
                    b = src.base_of(first)
                    lib.add_base("bench", b.path, kind=b.kind)
                    for name in names:
                        lib.add(src.get(name))
                    return dest, names
        from transformers import LlamaForCausalLM

        from skillbank.acquire.data import char_tokenizer
        from skillbank.acquire.pretrain import tiny_config
        from skillbank.worlds.strings import StringsWorld

        tok = char_tokenizer(StringsWorld().charset())
        torch.manual_seed(0)
        model_dir = dest.parent / "model"
        LlamaForCausalLM(tiny_config(len(tok), "mini", tok)).save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
        lib.add_base("bench", model_dir, kind="causal")
    return dest, []


def noop(worker, lib, spec: dict) -> dict:
    return {"value": spec["value"]}


def per_job_seconds(ex, home: Path, count: int) -> float:
    jobs = [Job(NOOP, {"value": i}) for i in range(count)]
    ex.run(home, jobs[:4])  # warm: every worker has opened the library
    t0 = time.perf_counter()
    results = ex.run(home, jobs)
    assert all(r.status == "done" for r in results), results[0].error
    return (time.perf_counter() - t0) / count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", type=Path, default=Path("/work/demo-home"))
    ap.add_argument("--n", type=int, default=20, help="held-out examples per job")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--noop", type=int, default=200, help="no-op jobs for the overhead figure")
    ap.add_argument("--executors", default="local,local-pool,ray")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "executors.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="skillbank-bench-"))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    runs: dict[str, dict] = {}
    try:
        template, names = scratch_home(args.source, scratch / "template" / "home")
        config = {"base": "bench", "eval": {"subjects": ["base", *names], "tasks": TASKS,
                                            "n": args.n, "seeds": seeds}}
        n_jobs = (1 + len(names)) * len(TASKS) * len(seeds)
        print(f"{n_jobs} evaluation jobs ({1 + len(names)} subjects × {len(TASKS)} tasks × "
              f"{len(seeds)} seeds, n={args.n}); scratch {scratch}", flush=True)
        for which in args.executors.split(","):
            home = scratch / which / "home"
            shutil.copytree(template, home)
            t0 = time.perf_counter()
            if which == "ray":
                import ray

                ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
                ex = get_executor("ray", threads=1)
            else:
                ex = get_executor("local", workers=args.workers if which == "local-pool" else None,
                                  threads=1)
            with Library.open(home) as lib, ex:
                # workers up and the library open before the clock starts
                startup_jobs = ex.run(home, [Job(NOOP, {"value": 0})])
                startup = time.perf_counter() - t0
                assert startup_jobs[0].status == "done", startup_jobs[0].error
                summary = run_sweep(lib, config, ex)
                overhead = per_job_seconds(ex, home, args.noop)
            if which == "ray":
                ray.shutdown()
            assert summary["done"] == n_jobs, summary
            runs[which] = {"workers": summary["workers"], "jobs": n_jobs,
                           "startup_seconds": round(startup, 2),
                           "sweep_seconds": summary["seconds"],
                           "jobs_per_second": round(n_jobs / summary["seconds"], 2),
                           "noop_seconds_per_job": round(overhead, 6)}
            print(which, runs[which], flush=True)
        metrics = {}
        for which in runs:  # every executor stored the same numbers
            with Library.open(scratch / which / "home") as lib:
                metrics[which] = {(r["subject"], r["task"], r["spec"]["seed"]): r["metrics"]
                                  for r in lib.results()}
        identical = all(m == next(iter(metrics.values())) for m in metrics.values())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "grid": {"subjects": 1 + len(names), "tasks": TASKS, "seeds": seeds, "n": args.n,
                 "jobs": n_jobs, "skills_from": str(args.source) if names else None},
        "runs": runs,
        "identical_results": identical,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "loadavg_1m": round(os.getloadavg()[0], 2)},
    }
    if "ray" in runs and "local" in runs:
        result["ray_overhead_seconds_per_job"] = round(
            runs["ray"]["noop_seconds_per_job"] - runs["local"]["noop_seconds_per_job"], 6)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'executor':<11} {'workers':>7} {'startup s':>9} {'sweep s':>8} {'jobs/s':>7} "
          f"{'no-op ms/job':>12}")
    for which, r in runs.items():
        print(f"{which:<11} {r['workers']:>7} {r['startup_seconds']:>9} {r['sweep_seconds']:>8} "
              f"{r['jobs_per_second']:>7} {1000 * r['noop_seconds_per_job']:>12.2f}")
    if "ray_overhead_seconds_per_job" in result:
        print(f"ray overhead per job: {1000 * result['ray_overhead_seconds_per_job']:.2f} ms; "
              f"identical results: {identical}; wrote {args.out}")


if __name__ == "__main__":
    main()
