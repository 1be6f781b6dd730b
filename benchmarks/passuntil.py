"""PassUntil's cost: samples per second, batched against one draw at a time, and the
whole ``repro passuntil`` on 2 cores.

What it measures, side by side in one run, on untrained members of the default family
shapes (``--sizes``; an untrained model passes almost nothing, so every instance runs to
its cap and the figure is pure sampling speed):

* **batched**: ``evaluate.passuntil.pass_until`` as skillbank runs it (rounds of 2,048
  draws spread over the instances still sampling);
* **one at a time**: the same draws one ``generate`` call each (``rows=1``), the way a
  sample-until-pass loop is first written.

Both on ``--n`` held-out ``rev`` inputs with cap ``--cap``, one torch thread. With
``--repro`` it also runs ``skillbank repro passuntil --workers 2`` in a fresh home and
records its wall time (target: ≤ 15 minutes on 2 cores).

Run from the repository root::

    .venv/bin/python benchmarks/passuntil.py            # about a minute
    .venv/bin/python benchmarks/passuntil.py --repro    # + the reproduction (~10 minutes)

It prints a table and writes ``benchmarks/results/passuntil.json``.
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
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "passuntil.json"


def _model(size: str):
    import torch
    from transformers import LlamaForCausalLM

    from skillbank.acquire.data import char_tokenizer
    from skillbank.acquire.pretrain import tiny_config
    from skillbank.worlds import get_world

    tok = char_tokenizer(get_world("strings").charset())
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_config(len(tok), size, tok)).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok, sum(p.numel() for p in model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="16x2,48x3,96x4")
    ap.add_argument("--n", type=int, default=8, help="held-out inputs")
    ap.add_argument("--cap", type=int, default=256, help="draws per input (batched run)")
    ap.add_argument("--single-cap", type=int, default=32, help="draws per input, one at a time")
    ap.add_argument("--repro", action="store_true", help="also time repro passuntil --workers 2")
    args = ap.parse_args()
    import torch

    from skillbank.evaluate.passuntil import PassUntilConfig, pass_until
    from skillbank.worlds import get_world

    torch.set_num_threads(1)
    world = get_world("strings")
    rows = []
    for size in args.sizes.split(","):
        model, tok, params = _model(size)
        row = {"size": size, "parameters": params}
        for name, cfg in (("batched", PassUntilConfig(cap=args.cap)),
                          ("one_at_a_time", PassUntilConfig(cap=args.single_cap, rows=1))):
            t0 = time.perf_counter()
            found = pass_until(model, tok, world, "rev", args.n, cfg)
            dt = time.perf_counter() - t0
            row[name] = {"draws": found["draws"], "seconds": round(dt, 2),
                         "samples_per_second": round(found["draws"] / dt, 1)}
        row["speedup"] = round(row["batched"]["samples_per_second"]
                               / row["one_at_a_time"]["samples_per_second"], 1)
        rows.append(row)
        print(f"{size:>6} {params:>8,} params: batched {row['batched']['samples_per_second']:>8,.0f}/s, "
              f"one at a time {row['one_at_a_time']['samples_per_second']:>6,.0f}/s "
              f"({row['speedup']}×)", flush=True)
    result = {"what": "PassUntil samples per second (untrained members, rev, 1 thread)",
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "torch": torch.__version__, "load": os.getloadavg()[0]},
              "n": args.n, "rows": rows}
    if args.repro:
        with tempfile.TemporaryDirectory() as home:
            exe = Path(sys.executable).parent / "skillbank"
            t0 = time.perf_counter()
            subprocess.run([str(exe), "--home", home, "repro", "passuntil", "--workers", "2",
                            "--out", str(Path(home) / "out"), "--json"], check=True,
                           stdout=subprocess.DEVNULL)
            result["repro_passuntil_wall_seconds"] = round(time.perf_counter() - t0, 1)
        print(f"repro passuntil --workers 2 from an empty home: "
              f"{result['repro_passuntil_wall_seconds']} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
