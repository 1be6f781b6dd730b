"""Peak memory of a merge as the model grows: it should be set by the largest parameter
times the number of members, not by the model.

Each run merges 8 random rank-8 LoRA skills (on every q/k/v/o/gate/up/down module of a
Llama-shaped model, hidden 1024, intermediate 4096) with TIES, re-factored to rank 8, in a
fresh process, on models with L, 2L and 4L layers, streamed (``merge_skills``: one
parameter's member ΔW at a time) and, side by side, materialised (every member's whole ΔW
first, as merges ran before), and reports the process's peak RSS above its RSS after the
members were built (the members' factors are a few MB; their
materialised ΔW would be 8 × 100.7M floats ≈ 3.2 GB at 6 layers). One thread.

    .venv/bin/python benchmarks/merge_memory.py        # ~3 min on 2 cores

Prints a table and writes ``benchmarks/results/merge_memory.json``. Measured (2-core
machine, idle): streamed 499 / 535 / 501 MiB for 2 / 4 / 8 layers — flat; materialised
1.20 / 2.22 / 4.70 GiB. The streamed time includes the merge's diagnostics (cosine, sign
conflicts), which the materialised baseline does not compute.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "merge_memory.json"


def one(layers: int, members: int, hidden: int, inter: int, materialise: bool = False) -> dict:
    import torch

    torch.set_num_threads(1)
    from skillbank.compose.ops import MergeSpec, merge_skills
    from skillbank.skill import Skill

    sys.path.insert(0, str(Path(__file__).parent))
    from merge_throughput import shapes

    g = torch.Generator().manual_seed(0)
    skills = []
    for k in range(members):
        tensors = {}
        for mod, (o, i) in shapes(hidden, inter, layers).items():
            tensors[f"{mod}.lora_A.weight"] = torch.randn(8, i, generator=g) * 0.01
            tensors[f"{mod}.lora_B.weight"] = torch.randn(o, 8, generator=g) * 0.01
        skills.append(Skill(f"s{k}", "lora", "0" * 64, tensors, config={"r": 8, "lora_alpha": 16}))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    t0 = time.perf_counter()
    if materialise:  # the way merges ran before streaming: every member's whole ΔW first
        from skillbank.compose import merge
        from skillbank.compose.ops import aligned_deltas

        taus = aligned_deltas(skills)
        factors = {p: merge.svd_factor(merge.ties(t, None, 0.2), 8) for p, t in taus.items()}
        merged = Skill("m", "lora", "0" * 64, {f"{p}.{k}": f[j] for p, f in factors.items()
                                                for j, k in ((0, "A"), (1, "B"))})
    else:
        merged = merge_skills("m", skills, MergeSpec("ties", rank=8))
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = sum(o * i for o, i in shapes(hidden, inter, layers).values())
    largest = max(o * i for o, i in shapes(hidden, inter, layers).values())
    return {"layers": layers, "mode": "materialised" if materialise else "streamed", "delta_entries": n, "merge_seconds": round(seconds, 2),
            "peak_rss_growth_mib": round((after - before) / 1024, 1),
            "members_x_largest_param_mib": round(members * largest * 4 / 2**20, 1),
            "all_members_delta_mib": round(members * n * 4 / 2**20, 1),
            "merged_kind": merged.kind}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--inter", type=int, default=4096)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--materialise", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.members, args.hidden, args.inter, args.materialise)))
        return
    rows = []
    runs = [(layers, mode) for layers in args.layers for mode in (False, True)]
    for layers, materialise in runs:  # a fresh process each: peak RSS is this merge's alone
        out = subprocess.run([sys.executable, __file__, "--one", str(layers), "--members",
                              str(args.members), "--hidden", str(args.hidden), "--inter",
                              str(args.inter)] + (["--materialise"] if materialise else []),
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{r['mode']:>12} {r['layers']:>3} layers  {r['delta_entries'] / 1e6:7.1f}M ΔW entries  merge "
              f"{r['merge_seconds']:7.2f} s  peak RSS growth {r['peak_rss_growth_mib']:8.1f} MiB  "
              f"(members × largest param {r['members_x_largest_param_mib']} MiB; all members' "
              f"ΔW {r['all_members_delta_mib']} MiB)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": rows, "members": args.members, "hidden": args.hidden,
                                    "inter": args.inter}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
