"""The standard recipes — the embedded base, the demo's skills, its router — and the one
way to get each: found in the library by recipe, or made now.

``skillbank demo`` shows these skills and every reproduction (``skillbank repro``) starts
from them, so the figures a reproduction reports are about the skills the demo shows.
Skills and routers are jobs (``acquire.jobs.TRAIN``, ``compose.jobs.ROUTE``) made through
``run.ensure`` on an executor: in this process by default, or on the one a
:class:`DemoConfig` names.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

from .acquire.jobs import train_job
from .acquire.lora import LoraRecipe
from .acquire.pretrain import BaseRecipe, ensure_base, find_base
from .base import Base
from .compose.jobs import route_job
from .compose.route import RouterRecipe
from .library import Library
from .run import Executor, ensure, get_executor
from .skill import Skill

DEMO_TASKS = ("rot", "shift", "dedup", "drop", "swap", "dup")
ROUTER_NAME = "composition-router"  # the demo's router, re-used by `repro composition`


@dataclass(frozen=True)
class DemoConfig:
    """The demo: base, skills, evaluation and which sections to add; where jobs run."""

    base: BaseRecipe = field(default_factory=BaseRecipe)
    tasks: tuple[str, ...] = DEMO_TASKS
    steps: int = 300
    rank: int = 8
    n_eval: int = 200
    seed: int = 0
    composition: bool = True  # router and training-free merges of the skills
    localization: bool = True  # a 1% graft of each skill and their overlap
    graft_steps: int | None = None  # mask-training steps (None: GraftRecipe's default)
    router_steps: int | None = None  # router training steps (None: RouterRecipe's default)
    executor: str | None = None  # "local" | "ray"; None: local
    address: str | None = None  # Ray cluster address (implies executor "ray")
    workers: int | None = None  # parallel workers (None: in this process)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))

    def skill_recipe(self, task: str) -> LoraRecipe:
        return LoraRecipe(world=self.base.world, task=task, rank=self.rank, alpha=2 * self.rank,
                          steps=self.steps, seed=self.seed)

    def skill_name(self, task: str) -> str:
        return f"{self.base.world}-{task}"

    def router_recipe(self) -> RouterRecipe:
        extra = {} if self.router_steps is None else {"steps": self.router_steps}
        return RouterRecipe(self.base.world, self.tasks, seed=self.seed, **extra)


def executor_for(cfg: DemoConfig, executor: Executor | None = None):
    """A context yielding ``executor`` if given (left open), else the one ``cfg`` names."""
    if executor is not None:
        return nullcontext(executor)
    return get_executor(cfg.executor, cfg.address, cfg.workers)


def base_name(recipe: BaseRecipe) -> str:
    return f"{recipe.world}-{recipe.size}"


def demo_base(lib: Library, cfg: DemoConfig, ui) -> Base:
    """The embedded base of ``cfg``, trained now (in this process, all cores) or re-used."""
    if find_base(lib, cfg.base) is not None:
        base, _ = ensure_base(lib, base_name(cfg.base), cfg.base)
        ui.say(f"base {base.name} {base.short} re-used (same recipe)")
        return base
    with ui.bar(f"base {cfg.base.size}", cfg.base.steps) as step:
        base, _ = ensure_base(lib, base_name(cfg.base), cfg.base, progress=step)
    ui.say(f"base {base.name} {base.short} trained")
    return base


def demo_skills(lib: Library, cfg: DemoConfig, ui, executor: Executor | None = None
                ) -> tuple[Base, list[Skill]]:
    """The demo's base and one LoRA skill per task, each re-used by recipe or trained now
    as a ``train`` job on ``executor`` (or the one ``cfg`` names)."""
    with executor_for(cfg, executor) as ex:
        ex.start()  # workers start up while the base trains here
        base = demo_base(lib, cfg, ui)
        jobs = [train_job(cfg.skill_name(t), base, cfg.skill_recipe(t)) for t in cfg.tasks]
        with ui.jobs(f"skills ({ex.name} × {ex.workers})", len(jobs)) as progress:
            done = ensure(ex, lib, jobs, progress, what="training")
    skills = [lib.get(r.result["ref"]) for r in done]
    made = sum(r.status == "done" for r in done)
    ui.say(f"skills: {', '.join(s.ref for s in skills)} ({made} trained now)")
    return base, skills


def router_job(base: Base, skills: list[Skill], recipe: RouterRecipe):
    """The ``route`` job making the demo's router over ``skills``."""
    return route_job(ROUTER_NAME, base, [s.ref for s in skills], recipe)


def demo_router(lib: Library, base: Base, skills: list[Skill], recipe: RouterRecipe, ui,
                executor: Executor | None = None) -> Skill:
    """The router over ``skills`` made by ``recipe``: re-used, or trained now as a ``route``
    job (in this process unless ``executor`` is given)."""
    job = router_job(base, skills, recipe)
    with (nullcontext(executor) if executor is not None else get_executor()) as ex, \
            ui.jobs("router", 1) as progress:
        (done,) = ensure(ex, lib, [job], progress, what="router")
    return lib.get(done.result["ref"])
