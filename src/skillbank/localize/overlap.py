"""Does where skills live track how much they help each other? (docs/methods.md §5)

Panigrahi et al. find that the grafts of a multi-task model's tasks are almost disjoint
and that their overlap tracks task similarity. Here, for skills i, j of one base with
grafts γ_i, γ_j (``sparse`` skills from ``localize``):

- overlap O[i][j] = |γ_i ∩ γ_j| / |γ_j| (``graft.overlap_matrix``), the share of j's graft
  that i's graft also holds;
- transfer T[i][j] = (lp_i(t_j) − lp_base(t_j)) / (lp_j(t_j) − lp_base(t_j)), with lp_x(t)
  the mean per-example target log-prob (teacher-forced, answer tokens and ``</s>``) of the
  base with skill x's *full* ΔW on ``n`` held-out inputs of task t (``split='eval'``), t_j
  skill j's task: the share of skill j's own gain on its task that skill i brings without
  any training on t_j (``graft.transfer_matrix``). It is a zero-shot transfer, not a
  fine-tuning one (how much fewer steps j needs from i's adapter); it needs only
  forward passes, so it fits beside the grafts in a few seconds;
- the Spearman correlation between O and T over the ordered pairs i ≠ j
  (``graft.overlap_transfer_correlation``), reported whatever it is.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..base import Base
from ..skill import Skill
from ..worlds import get_world
from . import graft
from .ops import Scorer, overlap_skills


def logprob_by_task(base: Base, skills: Sequence[Skill], world_name: str, tasks: Sequence[str],
                    n: int, seed: int, world_args: dict | None = None
                    ) -> dict[str, dict[str, float]]:
    """``{"base" | skill ref: {task: mean target log-prob}}`` on ``n`` held-out inputs."""
    world = get_world(world_name, **(world_args or {}))
    tok = base.load_tokenizer()
    examples = {t: world.examples(t, n, seed=seed, split="eval") for t in tasks}
    out = {}
    for label, applied in [("base", []), *[(s.ref, [s]) for s in skills]]:
        model = base.load_model(applied)
        out[label] = {t: Scorer(model, tok, ex)({})["mean_logprob"] for t, ex in examples.items()}
    return out


def overlap_vs_transfer(base: Base, skills: Sequence[Skill], grafts: Sequence[Skill],
                        world_name: str, n: int = 200, seed: int = 0,
                        world_args: dict | None = None) -> dict:
    """Overlap matrix of ``grafts`` (graft i localizes ``skills[i]``), transfer matrix of
    ``skills`` on their own tasks, and their Spearman correlation."""
    tasks = [s.recipe.get("task") for s in skills]
    ov = overlap_skills(grafts)
    lp = logprob_by_task(base, skills, world_name, tasks, n, seed, world_args)
    refs = [s.ref for s in skills]
    tr = graft.transfer_matrix(lp, refs, tasks, "base")
    return {"skills": refs, "grafts": ov["skills"], "tasks": tasks, "graft_sizes": ov["sizes"],
            "overlap": ov["matrix"], "transfer": tr, "logprob": lp,
            "correlation": graft.overlap_transfer_correlation(ov["matrix"], tr),
            "definition": "overlap[i][j] = |γ_i ∩ γ_j|/|γ_j|; transfer[i][j] = (lp_i(t_j) − "
                          "lp_base(t_j))/(lp_j(t_j) − lp_base(t_j)), mean target log-prob on "
                          f"{n} held-out inputs; Spearman over ordered pairs i ≠ j"}
