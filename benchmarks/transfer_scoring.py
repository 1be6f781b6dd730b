"""Transfer scoring vs verification: the cost of ranking library skills before training.

What it measures, in one process on the same base, candidates and target task:

* **scoring**: ``transfer.rank.score_candidates`` for every candidate (and the base alone)
  with all four estimators (LogME, TMI, LEEP, H-score): load base + candidate, one
  teacher-forced forward pass over ``--n`` target training inputs, then the estimators;
  reported as wall seconds in total, for feature extraction and per estimator;
* **verification**: ``transfer.jobs.verify_on`` (in this process): train the target skill from each candidate's
  LoRA for ``--steps`` steps and evaluate held-out exact match (``--n-eval``); the seconds
  of the candidate runs (train + eval), the from-scratch baseline reported apart.

Issue 6's target: scoring all candidates takes < 5% of the time of verifying them.
Candidates default to the demo's six strings skills in ``SKILLBANK_HOME`` (build them with
``skillbank demo``) and the target to ``rot+shift``. Run from the repository root::

    SKILLBANK_HOME=/work/demo-home .venv/bin/python benchmarks/transfer_scoring.py
    .venv/bin/python benchmarks/transfer_scoring.py --steps 300 --target shift+rot

It prints a table and writes ``benchmarks/results/transfer_scoring.json``. Expected runtime
with the defaults (mini base, 6 candidates, 150 steps) is about 2–3 minutes on 2 cores;
other processes on the machine stretch both sides (the load average is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from skillbank.library import Library  # noqa: E402
from skillbank.run import get_executor  # noqa: E402
from skillbank.transfer.jobs import verify_on  # noqa: E402
from skillbank.transfer.rank import compare, score_candidates  # noqa: E402

DEMO = "strings-rot,strings-shift,strings-dedup,strings-drop,strings-swap,strings-dup"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", default=os.environ.get("SKILLBANK_HOME"), help="library home")
    ap.add_argument("--candidates", default=DEMO)
    ap.add_argument("--target", default="rot+shift")
    ap.add_argument("--world", default="strings")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--n", type=int, default=256, help="target inputs for scoring")
    ap.add_argument("--n-eval", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "transfer_scoring.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    lib = Library.open(args.home)
    skills = [lib.get(r) for r in args.candidates.split(",")]
    base = lib.base_of(skills[0])

    t0 = time.perf_counter()
    scored = score_candidates(base, skills, args.world, args.target, n=args.n)
    score_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    with get_executor() as ex:  # in this process, one fine-tune after another
        verified = verify_on(ex, lib.home, base, skills, args.world, args.target, args.steps,
                             n_eval=args.n_eval)
    verify_wall = time.perf_counter() - t0
    cand = {k: v for k, v in verified.items() if k != "scratch"}
    verify_s = sum(v["train_seconds"] + v["eval_seconds"] for v in cand.values())
    result = {
        "target": args.target, "world": args.world, "base": base.name,
        "candidates": [s.ref for s in skills], "steps": args.steps, "n": args.n,
        "n_eval": args.n_eval, "answer_rows": scored["rows"],
        "scoring_seconds": round(score_wall, 3), "scoring_seconds_by_part": scored["seconds"],
        "verify_seconds": round(verify_s, 3), "verify_seconds_with_scratch": round(verify_wall, 3),
        "score_over_verify": round(score_wall / verify_s, 4),
        "target_score_over_verify": 0.05, "meets_target": score_wall / verify_s < 0.05,
        "per_candidate_verify_seconds": {k: round(v["train_seconds"] + v["eval_seconds"], 3)
                                         for k, v in cand.items()},
        "agreement": compare(scored, verified),
        "scores": scored["scores"],
        "verified_exact_match": {k: v["exact_match"] for k, v in verified.items()},
        "threads": args.threads, "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__, "machine": platform.machine(), "cpus": os.cpu_count(),
    }
    print(f"{'side':<28}{'seconds':>10}")
    print(f"{'scoring (all candidates)':<28}{score_wall:>10.2f}")
    for part, sec in scored["seconds"].items():
        print(f"{'  ' + part:<28}{sec:>10.2f}")
    print(f"{'verification (candidates)':<28}{verify_s:>10.2f}")
    print(f"{'  + scratch baseline':<28}{verify_wall:>10.2f}")
    print(f"score / verify = {result['score_over_verify']:.4f} (target < 0.05): "
          + ("met" if result["meets_target"] else "NOT met"))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
