"""Merge throughput: a TIES merge of 8 skills over ≥ 100M parameters' worth of ΔW.

Merging is memory-bound, so the yardstick is a plain tensor copy measured in the same run.

What it measures (8 random rank-8 LoRAs on every linear module of a Llama-shaped model,
hidden 1024, intermediate 4096, 6 layers, q/k/v/o/gate/up/down: 100.7M ΔW entries):

* **skillbank merge**: ``compose.merge.ties`` (PEFT convention, density 0.2, sign
  ``total``) on each weight matrix's 8 materialised ΔW_i = s·B_i·A_i. Bytes touched =
  8 ΔW read + 1 merged ΔW written (float32), the least any ΔW-space merge must move;
  TIES really reads its inputs several times (top-k, vote, mask), so this is a floor.
* **copy**: ``dst.copy_(src)`` of the same 8 ΔW per matrix into preallocated buffers;
  bytes touched = read + write. The ratio merge B/s ÷ copy B/s says how close the merge
  is to the memory bandwidth one core gets.
* **from factors**: the same merge including building each ΔW_i from its factors, and
  again followed by a rank-8 re-factoring by truncated SVD (``merge.svd_factor``) —
  the same work PEFT's ``ties_svd`` does.
* **PEFT** ``add_weighted_adapter`` on a model whose LoRA modules hold the same factors
  (weights 1, density 0.2, sign ``total``), two combination types:
  ``ties_svd`` — the closest match: it materialises each ΔW_i, runs TIES in ΔW space and
  re-factors to rank 8 by SVD (we pass ``svd_full_matrices=False``, its faster option);
  compare it with skillbank's "from factors + SVD". ``ties`` — PEFT's factor-wise TIES on
  the A's and B's separately: fast because it touches only the factors, but not the same
  maths (it adds cross terms B_i·A_j), so it is reported for context only.

Run from the repository root (one thread, as the test suite does)::

    .venv/bin/python benchmarks/merge_throughput.py     # ~5 min, peak RSS 2.5 GiB

It prints a table and writes ``benchmarks/results/merge_throughput.json``. The copy goes
into buffers allocated and touched once per shape (warm: the memory bandwidth one core
gets, without page faults); the merge allocates its result as it must. The first merge in
the process compiles or loads the compiled loops and is timed apart (``first_call``).
History: with ``kthvalue`` TIES took 25.5 s, with a radix select in tensor operations
15.5 s (1.3% of copy bandwidth); with the compiled loops 1.4–1.7 s (≈ 11%), idle.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "merge_throughput.json"
MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def shapes(hidden: int, inter: int, layers: int) -> dict[str, tuple[int, int]]:
    """``{module path: (out, in)}`` of a Llama's linear layers."""
    out = {}
    for layer in range(layers):
        for m in MODULES:
            part = "self_attn" if m.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
            o, i = (
                (inter, hidden)
                if m in ("gate_proj", "up_proj")
                else (hidden, inter)
                if m == "down_proj"
                else (hidden, hidden)
            )
            out[f"model.layers.{layer}.{part}.{m}"] = (o, i)
    return out


def factors(
    mods: dict, n: int, rank: int, seed: int
) -> list[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    g = torch.Generator().manual_seed(seed)
    return [
        {
            m: (
                torch.randn(rank, i, generator=g) / i**0.5,
                torch.randn(o, rank, generator=g) / rank**0.5,
            )
            for m, (o, i) in mods.items()
        }
        for _ in range(n)
    ]


def run_skillbank(mods, facs, scale, density, svd_rank=None) -> dict:
    from skillbank.compose import merge

    t_build = t_merge = t_copy = t_svd = 0.0
    n_entries = 0
    warm: dict[tuple, list[torch.Tensor]] = {}  # copy targets, allocated and touched once per shape
    for m in mods:
        t0 = time.perf_counter()
        taus = [scale * (b @ a) for a, b in (f[m] for f in facs)]
        t1 = time.perf_counter()
        merged = merge.ties(taus, None, density, "total", "peft")
        t2 = time.perf_counter()
        if svd_rank:
            merge.svd_factor(merged, svd_rank)
        t3 = time.perf_counter()
        bufs = warm.setdefault(tuple(taus[0].shape), [torch.zeros_like(t) for t in taus])
        t4 = time.perf_counter()
        for dst, src in zip(bufs, taus, strict=True):
            dst.copy_(src)
        t5 = time.perf_counter()
        t_build, t_merge, t_svd, t_copy = (
            t_build + t1 - t0,
            t_merge + t2 - t1,
            t_svd + t3 - t2,
            t_copy + t5 - t4,
        )
        n_entries += merged.numel()
        del taus, merged
    return {"build": t_build, "merge": t_merge, "svd": t_svd, "copy": t_copy, "entries": n_entries}


def run_peft(mods, facs, hidden, inter, layers, rank, alpha, density, combination) -> float:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=32,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=64,
    )
    with torch.no_grad():
        model = LlamaForCausalLM(cfg)
    lcfg = dict(r=rank, lora_alpha=alpha, target_modules=list(MODULES), init_lora_weights=False)
    peft_model = get_peft_model(model, LoraConfig(**lcfg), adapter_name="s0")
    for i in range(1, len(facs)):
        peft_model.add_adapter(f"s{i}", LoraConfig(**lcfg))
    named = dict(peft_model.base_model.model.named_modules())
    with torch.no_grad():
        for i, f in enumerate(facs):
            for m, (a, b) in f.items():
                named[m].lora_A[f"s{i}"].weight.copy_(a)
                named[m].lora_B[f"s{i}"].weight.copy_(b)
    names = [f"s{i}" for i in range(len(facs))]
    kw = {"density": density, "majority_sign_method": "total"}
    if combination.endswith("_svd"):
        kw.update(svd_rank=rank, svd_full_matrices=False)
    t0 = time.perf_counter()
    peft_model.base_model.add_weighted_adapter(
        names, [1.0] * len(names), "merged", combination_type=combination, **kw
    )
    seconds = time.perf_counter() - t0
    del peft_model, model
    gc.collect()
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--inter", type=int, default=4096)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--skills", type=int, default=8)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--density", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-peft", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    mods = shapes(args.hidden, args.inter, args.layers)
    facs = factors(mods, args.skills, args.rank, seed=0)
    alpha = 2 * args.rank
    scale = alpha / args.rank
    t0 = time.perf_counter()
    from skillbank.compose import merge

    merge.ties([torch.ones(3), -torch.ones(3)])  # the compiled loops: compiled or loaded once
    first_call = time.perf_counter() - t0
    sb = run_skillbank(mods, facs, scale, args.density)
    sb_svd = run_skillbank(mods, facs, scale, args.density, svd_rank=args.rank)
    entries, f32 = sb["entries"], 4
    touched_merge = (args.skills + 1) * entries * f32
    touched_copy = 2 * args.skills * entries * f32
    res = {
        "config": {
            **vars(args),
            "out": str(args.out),
            "delta_entries": entries,
            "delta_params_millions": round(entries / 1e6, 1),
            "dtype": "float32",
        },
        "skillbank_ties": {
            "seconds": round(sb["merge"], 3),
            "bytes_touched": touched_merge,
            "gb_per_s": round(touched_merge / sb["merge"] / 1e9, 3),
        },
        "copy": {
            "seconds": round(sb["copy"], 3),
            "bytes_touched": touched_copy,
            "gb_per_s": round(touched_copy / sb["copy"] / 1e9, 3),
        },
        "skillbank_first_call": {"seconds": round(first_call, 3)},
        "skillbank_from_factors": {"seconds": round(sb["build"] + sb["merge"], 3)},
        "skillbank_from_factors_svd": {
            "seconds": round(sb_svd["build"] + sb_svd["merge"] + sb_svd["svd"], 3),
            "svd_seconds": round(sb_svd["svd"], 3),
        },
    }
    res["merge_vs_copy_bandwidth"] = round(
        res["skillbank_ties"]["gb_per_s"] / res["copy"]["gb_per_s"], 3
    )
    if not args.no_peft:
        for comb in ("ties_svd", "ties"):
            s = run_peft(
                mods,
                facs,
                args.hidden,
                args.inter,
                args.layers,
                args.rank,
                alpha,
                args.density,
                comb,
            )
            res[f"peft_{comb}"] = {"seconds": round(s, 3)}
        res["speedup_vs_peft_ties_svd"] = round(
            res["peft_ties_svd"]["seconds"] / res["skillbank_from_factors_svd"]["seconds"], 3
        )
    res["machine"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
    }
    res["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print(
        f"TIES merge of {args.skills} skills over {entries / 1e6:.1f}M ΔW entries "
        f"(float32, {args.threads} thread)"
    )
    rows = [
        (
            "skillbank ties (merge only)",
            res["skillbank_ties"]["seconds"],
            res["skillbank_ties"]["gb_per_s"],
        ),
        ("plain copy of the 8 ΔW", res["copy"]["seconds"], res["copy"]["gb_per_s"]),
        ("skillbank first call (compile/load)", res["skillbank_first_call"]["seconds"], None),
        ("skillbank from factors", res["skillbank_from_factors"]["seconds"], None),
        ("skillbank from factors + SVD r", res["skillbank_from_factors_svd"]["seconds"], None),
    ]
    rows += [
        (f"PEFT add_weighted_adapter {c}", res[f"peft_{c}"]["seconds"], None)
        for c in ("ties_svd", "ties")
        if f"peft_{c}" in res
    ]
    for name, sec, gbs in rows:
        print(f"  {name:<36} {sec:9.3f} s" + (f"  {gbs:7.3f} GB/s touched" if gbs else ""))
    print(f"  merge bandwidth / copy bandwidth: {res['merge_vs_copy_bandwidth']:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
