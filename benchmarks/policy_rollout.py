"""Meta-World rollouts: simulator steps per second with and without the policy network, and
the evaluation of 5 tasks × 20 held-out episodes in one process against ``--workers 2``.

What it measures, side by side in one run:

* **steps/s**: ``policy.env.run_episode`` over the same held-out goals, the action drawn
  (a) as a constant zero action (the simulator alone), (b) by Meta-World's scripted expert,
  (c) by the policy base (one forward pass of the 3 × 256 MLP-ResNet per step, one torch
  thread). The gap (a) → (c) is what the policy costs per step.
* **evaluation**: ``skillbank eval --base B --tasks <5 tasks> --episodes 20`` through the CLI
  in one process and with ``--executor local --workers 2``, on a base cloned briefly (its
  success does not matter: a failing episode runs to the horizon, the most work).

Run from the repository root (needs ``pip install 'skillbank[policy]'``)::

    .venv/bin/python benchmarks/policy_rollout.py      # about 3 minutes

It prints a table and writes ``benchmarks/results/policy_rollout.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "policy_rollout.json"
TASKS = ("door-open-v3", "drawer-close-v3", "window-open-v3", "button-press-topdown-v3",
         "push-v3")


def _steps_per_second(act, task: str, goals) -> tuple[float, int]:
    from skillbank.policy.env import HORIZON, run_episode

    start, steps = time.perf_counter(), 0
    for g in goals:
        steps += run_episode(act, task, 0, g, HORIZON).steps
    return steps / (time.perf_counter() - start), steps


def _cli(home: Path, *args: str) -> float:
    env = {**os.environ, "SKILLBANK_HOME": str(home)}
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("skillbank")), *args], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--rate-goals", type=int, default=5, help="episodes per task for steps/s")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import numpy as np
    import torch

    from skillbank.library import Library
    from skillbank.policy.bc import PolicyBaseRecipe, ensure_policy_base
    from skillbank.policy.env import eval_goals, expert
    from skillbank.policy.evaluate import actor, load_policy

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        lib = Library.open(home)
        base, _ = ensure_policy_base(lib, "bench", PolicyBaseRecipe(demos=5, steps=200))
        act = actor(load_policy(base))
        goals = eval_goals(args.rate_goals)
        rates = []
        for task in TASKS:
            _steps_per_second(lambda _s: np.zeros(4), task, goals[:1])  # build the env once
            zero, n0 = _steps_per_second(lambda _s: np.zeros(4), task, goals)
            exp, n1 = _steps_per_second(expert(task).get_action, task, goals)
            pol, n2 = _steps_per_second(act, task, goals)
            rates.append({"task": task, "simulator": round(zero), "expert": round(exp),
                          "policy": round(pol), "steps": [n0, n1, n2]})
            print(f"{task:26s} simulator {zero:7.0f}  expert {exp:7.0f}  policy {pol:7.0f} steps/s",
                  flush=True)
        tasks = ",".join(TASKS)
        common = ["eval", "--base", "bench", "--tasks", tasks, "--episodes", str(args.episodes)]
        one = _cli(home, *common)
        two = _cli(home, *common, "--executor", "local", "--workers", "2")
        print(f"eval {len(TASKS)} tasks × {args.episodes} episodes: one process {one:.1f} s, "
              f"--workers 2 {two:.1f} s ({one / two:.2f}×)")
    out = {"rates": rates, "eval": {"tasks": list(TASKS), "episodes": args.episodes,
                                    "one_process_s": round(one, 1), "workers2_s": round(two, 1),
                                    "speedup": round(one / two, 2)},
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "loadavg_1m": os.getloadavg()[0]}}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
