"""Training throughput: skillbank's LoRA training against a minimal hand-written PEFT loop.

What it measures. Tokens per second (non-pad tokens through the model) of

* **skillbank**: ``acquire.lora.train_lora`` exactly as ``skillbank train`` runs it (world
  examples, PEFT wrapping, ``acquire.loop.train`` with its answer-only batches, warm-up +
  cosine schedule, gradient clipping, loss curve and a resumable checkpoint every 50 steps);
* **baseline**: a minimal hand-written PyTorch + PEFT script: load the model, wrap it with
  the same ``LoraConfig``, tokenize the same batches up front, then
  ``loss.backward(); opt.step(); opt.zero_grad()`` with AdamW at a constant learning rate;

on the same model (a freshly initialised ``mini`` base: throughput does not depend on the
weights), the same batches (skillbank's ``Sampler`` for the recipe's seed), batch size and
number of steps. Two figures per side: **end-to-end** (the whole call: load, wrap, data,
loop) and **loop** (the training loop only: for skillbank the time ``loop.train`` reports,
which includes building each batch; for the baseline the loop over pre-built tensors).
The runs alternate skillbank, baseline, skillbank, ... ``--repeats`` times (default 3) in
one process and the medians are compared; overhead = baseline tok/s ÷ skillbank tok/s − 1.
Target: end-to-end overhead < 20%.

Run it from the repository root::

    .venv/bin/python benchmarks/train_throughput.py            # ~30 s on 2 idle cores
    .venv/bin/python benchmarks/train_throughput.py --steps 200 --repeats 5

It prints a table and writes ``benchmarks/results/train_throughput.json``. Expected
runtime with the defaults (mini base, batch 64, 100 steps, 3 repeats) is about 30 s on an
idle 2-core machine (measured: 27 s; about 40k tok/s per side). Other processes competing
for the cores slow both sides, at times tenfold, and make the figures noisy (the load
average is recorded in the JSON); on a busy machine use ``--threads 1 --repeats 5``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "train_throughput.json"


def make_base(lib, root: Path, size: str):
    """A freshly initialised base of ``size`` with the strings world's char tokenizer."""
    from transformers import LlamaForCausalLM

    from skillbank.acquire.data import char_tokenizer
    from skillbank.acquire.pretrain import tiny_config
    from skillbank.worlds import get_world

    tok = char_tokenizer(get_world("strings").charset())
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_config(len(tok), size, tok))
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    return lib.add_base(f"bench-{size}", root / "model", kind="causal")


def run_skillbank(base, recipe, ckpt_root: Path) -> dict:
    from skillbank.acquire.lora import train_lora

    t0 = time.perf_counter()
    skill = train_lora("bench", base, recipe, checkpoint_root=ckpt_root)
    wall = time.perf_counter() - t0
    train = skill.metrics["train"]
    return {"wall_seconds": wall, "loop_seconds": train["seconds"],
            "final_loss": train["final_loss"]}


def run_baseline(base, recipe) -> dict:
    """The minimal script: nothing but PEFT, AdamW and a plain loop."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from skillbank.acquire.data import Sampler, training_batch
    from skillbank.worlds import get_world

    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(base.path)
    tok = AutoTokenizer.from_pretrained(base.path)
    torch.manual_seed(recipe.seed)
    model = get_peft_model(model, LoraConfig(r=recipe.rank, lora_alpha=recipe.alpha,
                                             target_modules=list(base.arch.targets),
                                             lora_dropout=0.0, bias="none"))
    pool = get_world(recipe.world).examples(recipe.task, recipe.pool, seed=recipe.seed)
    sampler = Sampler({recipe.task: pool}, recipe.batch_size, recipe.seed)
    batches = [training_batch(tok, sampler.batch(s)) for s in range(recipe.steps)]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.lr)
    model.train()
    t1 = time.perf_counter()
    losses = []
    for batch in batches:
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    t2 = time.perf_counter()
    return {"wall_seconds": t2 - t0, "loop_seconds": t2 - t1,
            "final_loss": sum(losses[-10:]) / len(losses[-10:])}


def count_tokens(base, recipe) -> int:
    """Non-pad tokens of the recipe's batches: the same for both sides."""
    from skillbank.acquire.data import Sampler, training_batch
    from skillbank.worlds import get_world

    tok = base.load_tokenizer()
    pool = get_world(recipe.world).examples(recipe.task, recipe.pool, seed=recipe.seed)
    sampler = Sampler({recipe.task: pool}, recipe.batch_size, recipe.seed)
    return sum(int(training_batch(tok, sampler.batch(s))["attention_mask"].sum())
               for s in range(recipe.steps))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="mini", help="base size (acquire.pretrain.SIZES)")
    ap.add_argument("--task", default="rot")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    from skillbank.acquire.lora import LoraRecipe
    from skillbank.library import Library

    recipe = LoraRecipe(world="strings", task=args.task, rank=args.rank, alpha=2 * args.rank,
                        steps=args.steps, batch_size=args.batch_size, seed=0)
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="skillbank-bench-") as tmp:
        root = Path(tmp)
        with Library.open(root / "home") as lib:
            base = make_base(lib, root, args.size)
            tokens = count_tokens(base, recipe)
            run_baseline(base, recipe)                  # warm-up: imports, allocator, kernels
            runs = []
            for i in range(args.repeats):
                sb = run_skillbank(base, recipe, lib.home / "checkpoints")
                bl = run_baseline(base, recipe)
                runs.append({"repeat": i, "skillbank": sb, "baseline": bl})
                print(f"repeat {i}: skillbank {tokens / sb['wall_seconds']:8.0f} tok/s "
                      f"(loop {tokens / sb['loop_seconds']:8.0f}), baseline "
                      f"{tokens / bl['wall_seconds']:8.0f} tok/s (loop "
                      f"{tokens / bl['loop_seconds']:8.0f})", file=sys.stderr)

    def median_tps(side: str, key: str) -> float:
        return tokens / statistics.median(r[side][key] for r in runs)

    fig = {side: {"tokens_per_second": median_tps(side, "wall_seconds"),
                  "loop_tokens_per_second": median_tps(side, "loop_seconds"),
                  "final_loss": statistics.median(r[side]["final_loss"] for r in runs)}
           for side in ("skillbank", "baseline")}
    overhead = 100 * (fig["baseline"]["tokens_per_second"]
                      / fig["skillbank"]["tokens_per_second"] - 1)
    loop_overhead = 100 * (fig["baseline"]["loop_tokens_per_second"]
                           / fig["skillbank"]["loop_tokens_per_second"] - 1)
    result = {
        "benchmark": "train_throughput",
        "config": {"size": args.size, "task": args.task, "steps": args.steps,
                   "batch_size": args.batch_size, "rank": args.rank, "repeats": args.repeats,
                   "tokens_per_run": tokens},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        **fig,
        "overhead_pct": overhead,
        "loop_overhead_pct": loop_overhead,
        "target_overhead_pct": 20.0,
        "holds": overhead < 20.0,
        "runs": runs,
        "wall_seconds": time.perf_counter() - t_start,
    }
    print(f"{'':12}{'end-to-end tok/s':>18}{'loop tok/s':>14}{'final loss':>12}")
    for side in ("skillbank", "baseline"):
        f = fig[side]
        print(f"{side:12}{f['tokens_per_second']:18.0f}{f['loop_tokens_per_second']:14.0f}"
              f"{f['final_loss']:12.4f}")
    print(f"overhead: end-to-end {overhead:+.1f}%, loop {loop_overhead:+.1f}% "
          f"(target < 20%: {'met' if result['holds'] else 'NOT met'}); "
          f"{tokens} tokens per run, {args.repeats} repeats, {result['wall_seconds']:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out}")
    return result


if __name__ == "__main__":
    main()
