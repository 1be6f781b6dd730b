"""Transferability estimators rank library skills as fine-tuning starts (docs/methods.md §9).

Setup (strings world, the demo's base and its six LoRA skills rot, shift, dedup, drop, swap,
dup from ``standard.demo_skills``): the target task is ``rot+shift`` (a chain none of the
candidates was trained on; fixed before any run). Every candidate is scored by LogME, TMI,
LEEP and H-score on the target's training inputs (``transfer.rank.score_candidates``:
answer-position hidden states of base + candidate, labels = next target token). Each
candidate is then verified: the target skill is trained from the candidate's LoRA tensors
with the same recipe and budget (rank 8, ``STEPS`` steps, lr 5e-3, batch 64, seed), and from
scratch as the baseline; held-out exact match is the achieved accuracy.

Figures: scores per candidate per estimator; verified exact match and token accuracy;
Kendall's τ-b, weighted τ and top-1 hit per estimator against exact match (and against token
accuracy, which has no ties at 0); wall time of scoring all candidates (features + all four
estimators) and of verifying them, and their ratio (target < 5%).

``holds`` rule (stated before running): the estimator chosen in advance, **LogME**, reaches
Kendall's τ > 0.5 against verified exact match over ≥ 6 candidates. The best estimator
after the fact is reported too (``best_estimator``), but does not decide ``holds``.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..acquire.pretrain import BaseRecipe
from ..library import Library
from ..report.html import Section
from ..run import get_executor
from ..standard import DemoConfig, demo_skills
from ..transfer.estimators import ESTIMATORS
from ..transfer.jobs import verify_on
from ..transfer.rank import compare, score_candidates
from . import Outcome

PAPER = ("LogME (You et al. 2021), LEEP (Nguyen et al. 2020), H-score (Bao et al. 2019), "
         "TMI (Xu & Kang 2023)")
CLAIM = "a transferability score ranks library skills as fine-tuning verifies (Kendall τ > 0.5)"

TARGET = "rot+shift"
CHOSEN = "logme"
STEPS = 150
N_SCORE = 256
N_EVAL = 200
MIN_CANDIDATES = 6


def run(lib: Library, ui, out_dir: Path, seed: int = 0, quick: bool = False) -> Outcome:
    if quick:
        cfg = DemoConfig(base=BaseRecipe(size="tiny", steps=10, batch_size=8, pool=64), steps=3,
                         n_eval=8)
        steps, n_score, n_eval = 3, 16, 8
    else:
        cfg, steps, n_score, n_eval = DemoConfig(), STEPS, N_SCORE, N_EVAL
    base, skills = demo_skills(lib, cfg, ui)
    world = cfg.base.world

    with ui.bar(f"score {len(skills)} candidates", len(skills) + 1) as step:
        scored = score_candidates(base, skills, world, TARGET, n=n_score, seed=seed, progress=step)
    with ui.jobs("verify: fine-tune from each", len(skills) + 1) as progress, \
            get_executor() as ex:
        t0 = time.perf_counter()
        verified = verify_on(ex, lib.home, base, skills, world, TARGET, steps, n_eval=n_eval,
                             seed=seed, progress=progress)
        verify_wall = time.perf_counter() - t0
    agree = compare(scored, verified, "exact_match")
    agree_tok = compare(scored, verified, "token_accuracy")
    verify_candidates = sum(v["train_seconds"] + v["eval_seconds"]
                            for k, v in verified.items() if k != "scratch")
    score_s = scored["seconds"]["total"]
    refs = [s.ref for s in skills]
    taus = {e: a["kendall_tau"] for e, a in agree.items() if a["kendall_tau"] is not None}
    best = max(taus, key=taus.get) if taus else None
    figures = {
        "target": TARGET, "world": world, "base": base.name, "candidates": refs,
        "steps": steps, "n_score_examples": n_score, "answer_rows": scored["rows"],
        "n_eval": n_eval, "chosen_estimator": CHOSEN,
        "scores": {e: {r: scored["scores"][r][e] for r in refs} for e in ESTIMATORS},
        "base_scores": scored["scores"]["base"],
        "ranking": scored["ranking"],
        "verified_exact_match": {r: verified[r]["exact_match"] for r in refs},
        "verified_token_accuracy": {r: verified[r]["token_accuracy"] for r in refs},
        "scratch_exact_match": verified["scratch"]["exact_match"],
        "scratch_token_accuracy": verified["scratch"]["token_accuracy"],
        "agreement": agree, "agreement_token_accuracy": agree_tok,
        "best_estimator": best, "best_kendall_tau": taus.get(best) if best else None,
        "scoring_seconds": round(score_s, 2),
        "scoring_seconds_by_part": scored["seconds"],
        "verify_seconds": round(verify_candidates, 2),
        "verify_seconds_with_scratch": round(verify_wall, 2),
        "score_over_verify": round(score_s / verify_candidates, 4) if verify_candidates else None,
        "target_score_over_verify": 0.05,
    }
    tau = agree[CHOSEN]["kendall_tau"]
    holds = tau is not None and tau > 0.5 and len(refs) >= MIN_CANDIDATES
    est = list(ESTIMATORS)
    header = ["estimator", "kendall τ (exact match)", "weighted τ", "top-1 hit",
              "kendall τ (token acc.)", "seconds"]
    rows = [[e + (" (chosen)" if e == CHOSEN else ""), agree[e]["kendall_tau"],
             agree[e]["weighted_tau"], "yes" if agree[e]["top1"] else "no",
             agree_tok[e]["kendall_tau"], scored["seconds"][e]] for e in est]
    cand_rows = [[r, *[scored["scores"][r][e] for e in est], verified[r]["exact_match"],
                  verified[r]["token_accuracy"]] for r in refs]
    cand_rows.append(["base / scratch", *[scored["scores"]["base"][e] for e in est],
                      verified["scratch"]["exact_match"], verified["scratch"]["token_accuracy"]])
    sections = [
        Section("Scores and verified accuracy per candidate", text=(
            f"Target {TARGET}; scores on {scored['rows']} answer rows of {n_score} training "
            f"inputs; verification: {steps} LoRA steps from each candidate's tensors, exact "
            f"match on {n_eval} held-out inputs. The last row is the base alone (scores) and "
            "training from scratch (accuracy)."),
            table=(["candidate", *est, "exact match", "token accuracy"], cand_rows)),
        Section("Cost", text=(
            f"Scoring all {len(refs)} candidates (+ base) with all four estimators: "
            f"{score_s:.1f} s; "
            f"verifying them by fine-tuning: {verify_candidates:.1f} s; ratio "
            f"{figures['score_over_verify']} (target < 0.05).")),
    ]
    notes = ("quick: tiny base, 3-step skills; figures not comparable with a full run."
             if quick else "")
    return Outcome(figures=figures, holds=holds, table=(header, rows), sections=sections,
                   notes=notes)
