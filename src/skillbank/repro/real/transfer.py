"""``skillbank repro transfer --profile real``: which real skill to start a new task from.

The estimators' own setting (docs/methods.md §9): features of a pretrained network, a new
labelled task with little data, and a choice among candidate starting points, verified by
fine-tuning. Here the base is all-MiniLM-L6-v2 and the candidates are the library's real
LoRA classification skills (``repro.real``) on five Debian tasks — ``CANDIDATES`` — and the
target is the task none of them saw, ``writing`` (editors / fonts / tex / text), with
``SHOTS`` train rows per label (fixed before any run).

Each candidate is scored by every estimator (``transfer.rank.score_candidates``: the target
texts' sentence embeddings through base + candidate ΔW, the class its label; LEEP reads the
candidate's own head) and then verified: a LoRA classifier trained on the target from the
candidate's factors (the head from zero) with one recipe and budget (``STEPS`` steps × 32,
lr 5e-3) and, as the baseline, from PEFT's fresh init ("scratch"); held-out accuracy is the
achieved score.

Figures: scores per candidate and estimator; verified accuracy; Kendall's τ-b, weighted τ
and top-1 hit per estimator; the wall time of scoring against verifying.

``holds`` rule (the embedded profile's, fixed in advance): the estimator chosen before
running, **LogME**, reaches Kendall's τ > 0.5 against verified accuracy over all
``len(CANDIDATES)`` candidates. The best estimator after the fact is reported beside it.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

from ...report.html import Section
from ...run import get_executor
from ...transfer.estimators import ESTIMATORS
from ...transfer.jobs import verify_on
from ...transfer.rank import compare, score_candidates
from .. import Outcome
from . import real_skills

PAPER = ("LogME (You et al. 2021), LEEP (Nguyen et al. 2020), H-score (Bao et al. 2019), "
         "TMI (Xu & Kang 2023)")
CLAIM = ("on a pretrained encoder, a transferability score ranks real skills as fine-tuning "
         "on a new few-shot task verifies (Kendall τ > 0.5)")
CANDIDATES = ("media", "net", "science", "desktop", "system")
TARGET = "writing"
SHOTS = 64
CHOSEN = "logme"
STEPS = 150
BATCH = 32
N_EVAL = 200


def holds(agreement: dict, n_candidates: int) -> bool:
    tau = agreement[CHOSEN]["kendall_tau"]
    return tau is not None and tau > 0.5 and n_candidates >= len(CANDIDATES)


def run(lib, ui, out_dir: Path, seed: int = 0, quick: bool = False, executor=None) -> Outcome:
    tasks = CANDIDATES[:3] if quick else CANDIDATES
    steps, n_eval = (3, 8) if quick else (STEPS, N_EVAL)
    world_args = {"shots": 4 if quick else SHOTS}
    with (get_executor() if executor is None else nullcontext(executor)) as ex:
        base, skills = real_skills(lib, ui, tasks, seed, quick, ex)
        with ui.bar(f"score {len(skills)} candidates", len(skills) + 1) as step:
            scored = score_candidates(base, skills, "debian", TARGET, n=0, seed=seed,
                                      world_args=world_args, progress=step)
        with ui.jobs(f"verify: fine-tune from each ({ex.name} × {ex.workers})",
                     len(skills) + 1) as progress:
            t0 = time.perf_counter()
            verified = verify_on(ex, lib.home, base, skills, "debian", TARGET, steps,
                                 n_eval=n_eval, seed=seed, batch_size=BATCH,
                                 world_args=world_args, progress=progress)
            verify_wall = time.perf_counter() - t0
    refs = [s.ref for s in skills]
    agree = compare(scored, verified, "accuracy")
    taus = {e: a["kendall_tau"] for e, a in agree.items() if a["kendall_tau"] is not None}
    best = max(taus, key=taus.get) if taus else None
    verify_s = sum(v["train_seconds"] + v["eval_seconds"] for k, v in verified.items()
                   if k != "scratch")
    score_s = scored["seconds"]["total"]
    figures = {
        "target": TARGET, "shots": world_args["shots"], "base": base.name,
        "candidates": refs, "candidate_tasks": list(tasks), "steps": steps, "n_eval": n_eval,
        "rows": scored["rows"], "chosen_estimator": CHOSEN,
        "scores": {e: {r: scored["scores"][r][e] for r in refs} for e in ESTIMATORS},
        "base_scores": scored["scores"]["base"], "ranking": scored["ranking"],
        "verified_accuracy": {r: verified[r]["accuracy"] for r in refs},
        "verified_stderr": {r: verified[r]["accuracy_stderr"] for r in refs},
        "scratch_accuracy": verified["scratch"]["accuracy"],
        "agreement": agree, "best_estimator": best,
        "best_kendall_tau": taus.get(best) if best else None,
        "scoring_seconds": round(score_s, 2), "verify_seconds": round(verify_s, 2),
        "verify_wall_seconds": round(verify_wall, 2),
        "score_over_verify": round(score_s / verify_s, 4) if verify_s else None,
    }
    est = list(ESTIMATORS)
    header = ["estimator", "kendall τ", "weighted τ", "top-1 hit", "seconds"]
    rows = [[e + (" (chosen)" if e == CHOSEN else ""), agree[e]["kendall_tau"],
             agree[e]["weighted_tau"], "yes" if agree[e]["top1"] else "no",
             scored["seconds"][e]] for e in est]
    cand_rows = [[r, *[scored["scores"][r][e] for e in est], verified[r]["accuracy"],
                  verified[r]["accuracy_stderr"]] for r in refs]
    cand_rows.append(["base / scratch", *[scored["scores"]["base"][e] for e in est],
                      verified["scratch"]["accuracy"], verified["scratch"]["accuracy_stderr"]])
    sections = [Section("Scores and verified accuracy per candidate", text=(
        f"Target {TARGET} ({world_args['shots']} train rows per label); scores on its "
        f"{scored['rows']} train texts; verification: {steps} LoRA steps × {BATCH} from each "
        f"candidate's factors, accuracy on {n_eval} held-out rows at most. The last row is the "
        f"base alone (scores) and training from PEFT's init (accuracy). Scoring {score_s:.1f} s "
        f"against verifying {verify_s:.1f} s."),
        table=(["candidate", *est, "accuracy", "± stderr"], cand_rows))]
    notes = ("quick: 3 tiny candidates, 3 steps, 8 rows; not comparable with a full run"
             if quick else "")
    return Outcome(figures=figures, holds=holds(agree, len(refs)), table=(header, rows),
                   sections=sections, notes=notes)
