"""The Mirage at CPU scale: exact match looks emergent where continuous metrics move smoothly.

Schaeffer, Miranda & Koyejo (2023) argue that emergent abilities are often a property of the
metric: exact match on an L-token answer behaves like p^L and jumps, while per-token
metrics and the target's probability change smoothly with scale (docs/methods.md §11, §13).
Here: the same family and the same measurements as ``repro passuntil`` (re-used from the
library; made if absent), on the three base tasks, under exact match, per-token accuracy,
token edit distance, the mean target log-probability, and log₁₀ of the PassUntil pass rate.

How jumpy a metric is across the sizes: its **jump share**, the largest change between two
adjacent sizes as a share of its whole range over the family (1: all of it in one step;
1/(m−1) for m sizes: evenly spread). Edit distance is negated so that higher is better.

Rule: ``holds`` iff on at least two of the three tasks exact match looks emergent (0.05 or
less on the two smallest members, and a jump share ≥ 0.5) while the mean target
log-probability and log₁₀ PassUntil both have a smaller jump share than exact match.

Run: ``skillbank repro mirage`` (after ``repro passuntil`` it only reads; ``--workers 2``
otherwise); ``--quick`` takes seconds and its figures mean nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..report.html import Section
from ..report.plots import curves
from . import Outcome, passuntil
from .passuntil import TASKS, measured

PAPER = "Are Emergent Abilities of Large Language Models a Mirage? (Schaeffer et al. 2023)"
CLAIM = ("across a family of bases, exact match looks emergent while continuous metrics "
         "and PassUntil change smoothly")

METRICS = ("exact_match", "token_accuracy", "neg_edit_distance", "mean_logprob", "log10_pass_until")
SHORT = {"exact_match": "EM", "token_accuracy": "token acc", "neg_edit_distance": "−edit dist",
         "mean_logprob": "log-prob", "log10_pass_until": "log PU"}
EMERGENT_BELOW = 0.05
EMERGENT_SHARE = 0.5


def jump_share(values: Sequence[float]) -> float:
    """The largest |change| between adjacent values as a share of their range (0 if flat)."""
    if len(values) < 2:
        raise ValueError("a jump share needs at least two sizes")
    span = max(values) - min(values)
    if span <= 0:
        return 0.0
    return max(abs(b - a) for a, b in zip(values, values[1:], strict=False)) / span


def series(cells: Sequence[dict], floor: float) -> dict[str, list[float]]:
    """Each metric across the members (``floor`` stands in for a PassUntil rate of 0 in log)."""
    g = [c["greedy"] for c in cells]
    return {"exact_match": [x["exact_match"] for x in g],
            "token_accuracy": [x["token_accuracy"] for x in g],
            "neg_edit_distance": [-x["edit_distance"] for x in g],
            "mean_logprob": [x["mean_logprob"] for x in g],
            "log10_pass_until": [math.log10(max(c["pass_until"]["pass_rate"], floor)) for c in cells]}


def prepare(lib, ui, seed: int = 0, quick: bool = False, executor=None) -> None:
    passuntil.prepare(lib, ui, seed=seed, quick=quick, executor=executor)


def run(lib, ui, out_dir, seed: int = 0, quick: bool = False) -> Outcome:
    m = measured(lib, ui, seed, quick)
    params = [x["parameters"] for x in m["members"]]
    # a PassUntil rate of 0 is drawn a tenth below the least any cell could resolve
    floor = 0.1 / max(c[t]["pass_until"]["draws"] for c in m["bases"] for t in TASKS)
    per_task, verdicts = {}, {}
    for t in TASKS:
        s = series([c[t] for c in m["bases"]], floor)
        shares = {k: round(jump_share(v), 4) for k, v in s.items()}
        em = s["exact_match"]
        emergent = max(em[:2]) <= EMERGENT_BELOW and shares["exact_match"] >= EMERGENT_SHARE
        smoother = all(shares[k] < shares["exact_match"] for k in ("mean_logprob", "log10_pass_until"))
        per_task[t] = {"series": {k: [round(x, 6) for x in v] for k, v in s.items()},
                       "jump_share": shares, "exact_match_looks_emergent": emergent,
                       "continuous_smoother": smoother}
        verdicts[t] = emergent and smoother
    holds = sum(verdicts.values()) >= 2
    images = []
    for t in TASKS:
        name = f"mirage_{t}.png"
        norm = {}
        for k, v in per_task[t]["series"].items():
            lo, hi = min(v), max(v)
            norm[k] = [(p, (x - lo) / (hi - lo) if hi > lo else 0.0) for p, x in zip(params, v, strict=True)]
        curves(norm, out_dir / name, f"{t}: each metric scaled to its range over the family",
               "parameters (log)", "share of the metric's range", logx=True)
        images.append(name)
    header = ["task", *[f"jump share: {SHORT[k]}" for k in METRICS], "EM looks emergent",
              "continuous smoother"]
    rows = [[t, *[f["jump_share"][k] for k in METRICS], "yes" if f["exact_match_looks_emergent"] else "no",
             "yes" if f["continuous_smoother"] else "no"] for t, f in per_task.items()]
    figures = {"parameters": params, "tasks": per_task, "holds_by_task": verdicts}
    notes = "; ".join(f"{t}: {'holds' if ok else 'does not hold'}" for t, ok in verdicts.items())
    if quick:
        notes += ". Quick run: tiny sizes, figures not comparable with a full run."
    by_size = [[x["size"], f"{x['parameters']:,}",
                *[" / ".join(f"{per_task[t]['series'][k][i]:.3g}" for k in
                             ("exact_match", "mean_logprob", "log10_pass_until")) for t in TASKS]]
               for i, x in enumerate(m["members"])]
    return Outcome(figures=figures, holds=holds, table=(header, rows), notes=notes, sections=[
        Section("Exact match / mean target log-prob / log₁₀ PassUntil by member",
                table=(["size", "parameters", *TASKS], by_size), images=images)])
