"""LESS at CPU scale: a gradient-selected 5% of a mixed pool vs a random 5% vs the full pool.

Xia et al. (2024) report that training on the 5% of a pool LESS selects for a target task
matches or beats training on the full pool and beats a random 5%. Here: a pool of ten
``strings`` tasks (``POOL``, ``per_task`` training examples each), target ``shift`` with
16 target examples, on the demo's base (``strings-mini``, re-used from the library by
recipe). LESS (``acquire.select``) picks 5%; a fresh LoRA (rank 8, every Llama linear) is
then trained on each of LESS-5%, a random 5% (same size) and the full pool for the same
steps and batch size (300 × 64, the demo skills' budget), and scored by held-out exact
match on the target. Warm-up: 4 epochs on a random 5% (batch 16), one checkpoint each;
projection to 512 dimensions.

Rule: ``holds`` iff LESS-5% accuracy ≥ random-5% accuracy and LESS-5% accuracy ≥ full-pool
accuracy − 0.05 (within 5 points of the full pool, or better).

Run: ``skillbank repro less`` (selection plus 3 × 300 LoRA steps: 8.7 min wall measured on
2 cores shared with other jobs at load ≈ 10); ``--quick`` takes seconds and its figures
mean nothing.

Figures: docs/methods.md §7.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..acquire.data import Sampler
from ..acquire.loop import LoopConfig, train
from ..acquire.pretrain import BaseRecipe, ensure_base
from ..acquire.select import SelectConfig, lora_model, select, work_units
from ..evaluate.suites import evaluate_model
from ..report.html import Section
from ..worlds import get_world
from . import Outcome

PAPER = "LESS: Selecting Influential Data for Targeted Instruction Tuning (Xia et al. 2024)"
CLAIM = "a LESS-selected 5% of a mixed pool matches the full pool and beats a random 5% on the target"

POOL = ["rot", "shift", "dedup", "drop", "swap", "dup", "rev+rot", "shift+rev", "sort+dup", "swap+drop"]
TARGET = "shift"
MARGIN = 0.05  # LESS-5% may trail the full pool by at most this much


@dataclass
class Sizes:
    per_task: int
    steps: int
    batch_size: int
    n_eval: int
    dim: int
    warmup_epochs: int


FULL = Sizes(per_task=200, steps=300, batch_size=64, n_eval=200, dim=512, warmup_epochs=4)
QUICK = Sizes(per_task=20, steps=3, batch_size=4, n_eval=4, dim=16, warmup_epochs=2)
QUICK_BASE = BaseRecipe(size="tiny", steps=3, batch_size=4, pool=16)


def related(task: str, target: str) -> bool:
    """A pool task is related to the target when their chains share a primitive."""
    return bool(set(task.split("+")) & set(target.split("+")))


def train_subset(base, tokenizer, examples, sizes: Sizes, seed: int, progress=None):
    """A fresh LoRA trained on ``examples`` for ``sizes.steps`` steps."""
    model = lora_model(base, rank=8, seed=seed)
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    train(model, params, Sampler({"data": list(examples)}, sizes.batch_size, seed), tokenizer,
          LoopConfig(steps=sizes.steps, lr=5e-3, warmup=max(1, sizes.steps // 10)), progress=progress)
    model.eval()
    return model


def run(lib, ui, out_dir, seed: int = 0, quick: bool = False) -> Outcome:
    torch.set_num_threads(1)
    sizes = QUICK if quick else FULL
    if quick:
        base, _ = ensure_base(lib, "strings-tiny-quick", QUICK_BASE)
    else:
        from ..standard import DemoConfig

        with ui.bar("base strings-mini", DemoConfig().base.steps) as step:
            base, _ = ensure_base(lib, "strings-mini", DemoConfig().base, progress=step)
    tokenizer = base.load_tokenizer()
    world = get_world("strings")
    cfg = SelectConfig(world="strings", pool_tasks=POOL, target=TARGET, per_task=sizes.per_task,
                       fraction=0.05, warmup_epochs=sizes.warmup_epochs, dim=sizes.dim, seed=seed)
    n_pool = len(POOL) * sizes.per_task
    with ui.bar("LESS select", work_units(cfg)) as step:
        sel = select(base, cfg, progress=step)
    pool = sel["pool"]
    chosen = sel["selected"]
    rng = np.random.default_rng([seed, 11])
    rand = sorted(rng.choice(n_pool, size=len(chosen), replace=False).tolist())
    subsets = {"less_5pct": [pool[i] for i in chosen], "random_5pct": [pool[i] for i in rand],
               "full_pool": pool}
    acc, stderr = {}, {}
    for name, exs in subsets.items():
        with ui.bar(f"train {name}", sizes.steps) as step:
            model = train_subset(base, tokenizer, exs, sizes, seed, progress=step)
        m = evaluate_model(model, tokenizer, world, TARGET, sizes.n_eval, seed)
        acc[name], stderr[name] = round(m["exact_match"], 4), round(m["exact_match_stderr"], 4)
    with torch.no_grad():
        base_m = evaluate_model(base.load_model(), tokenizer, world, TARGET, sizes.n_eval, seed)

    def share(exs, pred) -> float:
        return round(sum(pred(e.task) for e in exs) / max(len(exs), 1), 4)

    figures = {
        "target": TARGET, "pool_tasks": POOL, "pool_size": n_pool, "selected": len(chosen),
        "train_steps": sizes.steps, "batch_size": sizes.batch_size, "n_eval": sizes.n_eval,
        "accuracy": acc, "accuracy_stderr": stderr, "base_accuracy": round(base_m["exact_match"], 4),
        "less_make_up": sel["make_up"],
        "less_share_target": share(subsets["less_5pct"], lambda t: t == TARGET),
        "less_share_related": share(subsets["less_5pct"], lambda t: related(t, TARGET)),
        "random_share_target": share(subsets["random_5pct"], lambda t: t == TARGET),
        "random_share_related": share(subsets["random_5pct"], lambda t: related(t, TARGET)),
        "pool_share_target": round(1 / len(POOL), 4),
        "margin_vs_full_allowed": MARGIN, "checkpoint_lrs": [round(x, 6) for x in sel["checkpoint_lrs"]],
        "projection_dim": sizes.dim, "base": base.fingerprint,
    }
    figures["less_minus_random"] = round(acc["less_5pct"] - acc["random_5pct"], 4)
    figures["less_minus_full"] = round(acc["less_5pct"] - acc["full_pool"], 4)
    holds = acc["less_5pct"] >= acc["random_5pct"] and acc["less_5pct"] >= acc["full_pool"] - MARGIN
    rows = [[name.replace("_", " "), len(subsets[name]), acc[name], stderr[name],
             share(subsets[name], lambda t: t == TARGET), share(subsets[name], lambda t: related(t, TARGET))]
            for name in subsets]
    rows.append(["base alone", 0, figures["base_accuracy"], round(base_m["exact_match_stderr"], 4), "", ""])
    header = ["training data", "examples", f"{TARGET} exact match", "± stderr", "share target",
              "share related"]
    text = ("LESS selection by task: " + ", ".join(f"{t}: {n}" for t, n in sel["make_up"].items())
            + f". Related tasks share a primitive with {TARGET!r}.")
    notes = (f"LESS-5% {acc['less_5pct']:.3f} vs random-5% {acc['random_5pct']:.3f} vs full pool "
             f"{acc['full_pool']:.3f} ({sizes.steps} steps each).")
    if quick:
        notes += " Quick run: tiny sizes, figures not comparable with a full run."
    return Outcome(figures=figures, holds=holds, table=(header, rows),
                   sections=[Section("What LESS selected", text=text)], notes=notes)
