"""Continual acquisition: learn tasks one after another, fill the accuracy matrix R.

Every strategy gets the same budget per task (``steps`` optimiser steps of ``batch_size``
examples, ``loop.train``'s schedule) and the same LoRA shape (docs/methods.md §10):

- ``seq``    one shared LoRA fine-tuned on each task in turn.
- ``replay`` the shared LoRA; each batch is ``replay_fraction`` examples from a buffer
  balanced over the past tasks (avalanche's ExperienceBalancedBuffer: ``replay_memory``
  stored examples split evenly across past tasks), the rest from the current task. The
  batch size stays ``batch_size`` (avalanche adds the memory batch on top; we keep the
  budget equal across strategies instead).
- ``ewc``    the shared LoRA plus λ Σ F (θ − θ*)² (Kirkpatrick et al. 2017; no ½, as in
  avalanche's EWCPlugin). F is the mean over minibatches of squared gradients of the loss
  (the empirical Fisher), accumulated online F ← γF + F_t (Schwarz et al. 2018, γ = 0.9);
  θ* is the LoRA after the last task.
- ``olora``  a new LoRA per task, earlier ones frozen and summed (their ΔW added to the
  base weights: exactly Σ_j B_j A_j x), plus λ Σ_modules Σ |A_old A_newᵀ| (O-LoRA,
  Wang et al. 2023, its lamda_1 = 0.5; the L2 term lamda_2 is 0 in their runs, omitted).
- ``expand`` library expansion (PSEC): a new LoRA skill per task trained alone on the
  base, earlier skills frozen. R is the task-aware library (task i is answered by skill i;
  a task with no skill yet by the base, so R[t][i] = b[i] for i > t); after the last task a
  PSEC router (compose/route.py) over all members gives the task-agnostic final row. The
  members' forgetting is zero by construction — checked: their stored tensors are
  re-read and compared bit for bit, and each member is re-evaluated after every task.

Hyper-parameters at this scale (5 strings tasks, 100 steps each, demo base): EWC's λ = 1e8,
because the empirical Fisher of a task learned to ~zero loss is tiny (Σ F ≈ 3e-4 after rot);
a 3-task sweep (rot, shift, dedup) gave Chaudhry forgetting 1.0 / 0.995 / 1.0 / 0.925 / 0.415 /
0.365 / 0.085 for λ = 0 / 1e4 / 1e6 / 1e7 / 1e8 / 1e9 / 1e10, with the later tasks unlearned
from 1e8 on (stability bought with plasticity; n_eval 100). O-LoRA keeps its paper's
λ = 0.5: on that sweep λ = 0.5 / 0.05 / 0 gave forgetting 0.565 / 1.0 / 1.0 — a frozen
LoRA does not stop a new one from overriding its outputs.

With ``curve_points > 0`` the current task is also evaluated at that many points while it
is learned (LIBERO's learning curves; x = examples seen = step × batch_size).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import torch

from ..acquire.data import Sampler, training_batch
from ..acquire.loop import LoopConfig, train
from ..acquire.lora import LoraRecipe, lora_config, lora_tensors, target_modules
from ..acquire.regularize import ewc_penalty, fisher_diag, olora_penalty, online_fisher
from ..base import Base
from ..evaluate import continual as metrics
from ..evaluate.suites import evaluate_model
from ..library import Library
from ..skill import Skill, SkillError
from ..worlds import get_world
from .joint import joint_reference
from .replay import ReplaySampler, balanced_buffer

STRATEGIES = ("seq", "replay", "ewc", "olora", "expand")
__all__ = ["STRATEGIES", "ContinualConfig", "ContinualRun", "ReplaySampler", "balanced_buffer",
           "joint_reference", "run_continual"]


@dataclass
class ContinualConfig:
    """One continual run: the task sequence, the strategy, the per-task budget."""

    tasks: list[str]
    strategy: str = "seq"
    world: str = "strings"
    steps: int = 100
    batch_size: int = 64
    lr: float = 5e-3
    rank: int = 8
    alpha: int = 16
    pool: int = 4000
    n_eval: int = 200
    seed: int = 0
    replay_memory: int = 1000
    replay_fraction: float = 0.5
    ewc_lambda: float = 1e8
    ewc_gamma: float = 0.9
    fisher_batches: int = 8
    olora_lambda: float = 0.5
    router_steps: int = 150
    router_lr: float = 1e-2  # the expand strategy's router (see compose.route.RouterRecipe)
    curve_points: int = 0
    target_modules: list[str] = field(default_factory=list)  # empty: the base's linear layers

    def check(self) -> None:
        if self.strategy not in STRATEGIES:
            raise SkillError(
                f"unknown strategy {self.strategy!r}; choose from {', '.join(STRATEGIES)}"
            )
        if len(self.tasks) < 2 or len(set(self.tasks)) != len(self.tasks):
            raise SkillError(f"need at least two distinct tasks in sequence, got {self.tasks}")
        if self.steps < 1 or self.n_eval < 1 or not 0 <= self.replay_fraction < 1:
            raise SkillError("steps and n-eval must be ≥ 1 and replay_fraction in [0, 1)")

    def lora_recipe(self, task: str) -> LoraRecipe:
        return LoraRecipe(
            world=self.world,
            task=task,
            rank=self.rank,
            alpha=self.alpha,
            steps=self.steps,
            lr=self.lr,
            batch_size=self.batch_size,
            pool=self.pool,
            seed=self.seed,
            target_modules=list(self.target_modules),
        )


@dataclass
class ContinualRun:
    """R (and its bootstrap stderr), b, the stored skills, the learning curves, extras."""

    config: dict[str, Any]
    R: list[list[float]]
    R_stderr: list[list[float]]
    b: list[float]
    skills: list[str]
    curves: dict[str, list[tuple[int, float]]]
    extra: dict[str, Any]
    metrics: dict[str, Any]


def evaluate_row(model, tokenizer, world, tasks, n: int, seed: int) -> list[tuple[float, float]]:
    """(exact match, its stderr) of one model on every task."""
    model.eval()
    out = []
    for task in tasks:
        m = evaluate_model(model, tokenizer, world, task, n, seed)
        out.append((m["exact_match"], m["exact_match_stderr"]))
    return out


def _new_lora(model, cfg: ContinualConfig, seed: int, base: Base):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # as lora.train_lora: same seed, same initial A
    peft_model = get_peft_model(
        model,
        LoraConfig(
            r=cfg.rank,
            lora_alpha=cfg.alpha,
            lora_dropout=0.0,
            target_modules=target_modules(cfg.target_modules, base),
            bias="none",
            fan_in_fan_out=base.arch.fan_in_fan_out,
        ),
    )
    return peft_model, {k: p for k, p in peft_model.named_parameters() if p.requires_grad}


def _lora_A(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{module path: A}`` from PEFT parameter names (prefix and adapter name stripped)."""
    return {
        k.removeprefix("base_model.model.").split(".lora_A.")[0]: p
        for k, p in params.items()
        if ".lora_A." in k
    }


def run_continual(
    lib: Library,
    base: Base,
    cfg: ContinualConfig,
    ui,
    b: list[float] | None = None,
    joint: list[float] | None = None,
) -> ContinualRun:
    """Learn ``cfg.tasks`` in order with ``cfg.strategy``; store one skill per task (lineage:
    the previous one) and the result (subject ``continual:STRATEGY``) in ``lib``.

    ``b`` (the base's accuracy per task) is measured unless given; ``joint`` (a jointly
    trained reference's accuracy per task) adds intransigence to the metrics. On an encoder
    base the skills are classifiers (``continual/classify.py``)."""
    if base.kind == "encoder":
        from .classify import run_continual_classifier

        return run_continual_classifier(lib, base, cfg, ui, b=b, joint=joint)
    cfg.check()
    world = get_world(cfg.world)
    tok = base.load_tokenizer()
    tasks, T = cfg.tasks, len(cfg.tasks)
    pools = {t: world.examples(t, cfg.pool, seed=cfg.seed, split="train") for t in tasks}
    if b is None:
        b = [
            acc
            for acc, _ in evaluate_row(base.load_model(), tok, world, tasks, cfg.n_eval, cfg.seed)
        ]
    R = [[0.0] * T for _ in range(T)]
    S = [[0.0] * T for _ in range(T)]
    curves: dict[str, list[tuple[int, float]]] = {}
    stored: list[Skill] = []
    extra: dict[str, Any] = {}
    loop = LoopConfig(steps=cfg.steps, lr=cfg.lr)
    shared = cfg.strategy in ("seq", "replay", "ewc")
    if shared:
        model, params = _new_lora(base.load_model(), cfg, cfg.seed, base)
    fisher = anchor = None
    members_at_add: list[dict[str, torch.Tensor]] = []
    for t, task in enumerate(tasks):
        start_acc = R[t - 1][t] if t else b[t]
        if not shared:  # olora: base + frozen earlier LoRAs; expand: the base alone
            frozen = stored if cfg.strategy == "olora" else []
            # expand: exactly `train_lora`'s seed; olora: a fresh A per task, as O-LoRA's init
            seed = cfg.seed + t if cfg.strategy == "olora" else cfg.seed
            model, params = _new_lora(base.load_model(frozen), cfg, seed, base)
        sampler: Any = Sampler({task: pools[task]}, cfg.batch_size, cfg.seed)
        extra_loss = None
        if cfg.strategy == "replay":
            sampler = ReplaySampler(
                pools[task],
                balanced_buffer({p: pools[p] for p in tasks[:t]}, cfg.replay_memory),
                cfg.batch_size,
                cfg.seed,
                cfg.replay_fraction,
            )
        elif cfg.strategy == "ewc" and fisher is not None:
            extra_loss = partial(ewc_penalty, params, fisher, anchor, cfg.ewc_lambda)
        elif cfg.strategy == "olora" and stored:
            new_A = _lora_A(params)
            old_A = {m: torch.cat([s.tensors[f"{m}.lora_A.weight"] for s in stored]) for m in new_A}
            extra_loss = partial(olora_penalty, old_A, new_A, cfg.olora_lambda)
        on_step = None
        if cfg.curve_points > 0:
            marks = {round(cfg.steps * (j + 1) / cfg.curve_points) for j in range(cfg.curve_points)}
            curves[task] = [(0, start_acc)]
            n_curve = max(1, cfg.n_eval // 2)

            def on_step(step, _opt, _task=task, _marks=marks, _n=n_curve, _model=model):
                if step in _marks:
                    _model.eval()
                    em = evaluate_model(_model, tok, world, _task, _n, cfg.seed)["exact_match"]
                    curves[_task].append((step * cfg.batch_size, em))
                    _model.train()

        with ui.bar(f"{cfg.strategy} {t + 1}/{T} {task}", cfg.steps) as bar:
            log = train(
                model,
                params,
                sampler,
                tok,
                loop,
                progress=bar,
                on_step=on_step,
                extra_loss=extra_loss,
            )
        if cfg.strategy == "ewc":
            batches = [
                training_batch(tok, sampler.batch(cfg.steps + j)) for j in range(cfg.fisher_batches)
            ]
            fisher = online_fisher(fisher, fisher_diag(model, params, batches), cfg.ewc_gamma)
            anchor = {k: p.detach().clone() for k, p in params.items()}
        skill = _snapshot(base, cfg, t, model, log, stored)
        skill = lib.add(skill)
        stored.append(skill)
        if cfg.strategy == "expand":
            members_at_add.append({k: v.clone() for k, v in skill.tensors.items()})
            for i in range(T):  # the library answers task i with skill i, or the base
                if i <= t:  # the stored skill merged into the base, the same way every time
                    sub = base.load_model([stored[i]])
                    ((R[t][i], S[t][i]),) = evaluate_row(
                        sub, tok, world, [tasks[i]], cfg.n_eval, cfg.seed
                    )
                else:
                    R[t][i], S[t][i] = b[i], 0.0
        else:
            for i, (em, se) in enumerate(
                evaluate_row(model, tok, world, tasks, cfg.n_eval, cfg.seed)
            ):
                R[t][i], S[t][i] = em, se
        ui.say(f"{cfg.strategy} after {task}: " + " ".join(f"{x:.2f}" for x in R[t]))
    if cfg.strategy == "expand":
        extra.update(_expand_checks(lib, base, cfg, stored, members_at_add, R, tok, world, ui))
        stored.append(extra.pop("router_skill"))
    out_metrics = metrics.summary(R, b, joint)
    if cfg.curve_points > 0:
        out_metrics["libero"] = metrics.libero([[y for _, y in curves[t]] for t in tasks], R)
    run = ContinualRun(
        config=asdict(cfg),
        R=R,
        R_stderr=S,
        b=list(b),
        skills=[s.ref for s in stored],
        curves=curves,
        extra=extra,
        metrics=out_metrics,
    )
    lib.add_result(
        f"continual:{cfg.strategy}",
        cfg.world,
        ",".join(tasks),
        {
            "R": R,
            "R_stderr": S,
            "b": list(b),
            "joint": joint,
            **out_metrics,
            **extra,
            "skills": run.skills,
            "curves": curves,
        },
        {**asdict(cfg), "base": base.fingerprint},
    )
    return run


def _snapshot(
    base: Base, cfg: ContinualConfig, t: int, model, log: dict, stored: list[Skill]
) -> Skill:
    """The skill after task t: the shared LoRA's state, or the task's own new LoRA."""
    task = cfg.tasks[t]
    if cfg.strategy == "expand":  # exactly what `skillbank acquire` would train alone
        recipe = cfg.lora_recipe(task).as_dict()
    else:
        recipe = {
            "method": f"continual-{cfg.strategy}",
            "sequence": list(cfg.tasks),
            "after": task,
            "position": t,
            **{k: v for k, v in asdict(cfg).items() if k != "tasks"},
        }
    if cfg.strategy == "expand":
        lineage = []  # members are independent; the router's lineage names them all
    elif cfg.strategy == "olora":
        lineage = [s.ref for s in stored]  # the frozen LoRAs this one is applied on top of
    else:
        lineage = [stored[-1].ref] if stored else []  # the shared LoRA before this task
    cfg_dict = lora_config(cfg.lora_recipe(task), base)
    if cfg.strategy == "olora":
        cfg_dict = {**cfg_dict, "applied_with": "the frozen LoRAs in lineage, summed"}
    return Skill(
        name=f"cl-{cfg.strategy}-{task}",
        kind="lora",
        base=base.fingerprint,
        tensors=lora_tensors(model),
        config=cfg_dict,
        recipe=recipe,
        lineage=lineage,
        metrics={"train": {"curve": log["curve"], "seconds": round(log["seconds"], 2)}},
    )


def _expand_checks(lib, base, cfg, members, at_add, R, tok, world, ui) -> dict[str, Any]:
    """Bit-identical stored members, unchanged accuracy alone, and the routed final row."""
    from ..compose.route import RouterRecipe, load_routed, train_router

    identical = all(
        set(lib.get(m.ref).tensors) == set(t0)
        and all(torch.equal(lib.get(m.ref).tensors[k], v) for k, v in t0.items())
        for m, t0 in zip(members, at_add, strict=True)
    )
    T = len(cfg.tasks)
    unchanged = all(R[t][i] == R[i][i] for i in range(T) for t in range(i, T))
    with ui.bar("expand router", cfg.router_steps) as bar:
        router = lib.add(
            train_router(
                "cl-expand-router",
                base,
                members,
                RouterRecipe(cfg.world, tuple(cfg.tasks), steps=cfg.router_steps,
                             lr=cfg.router_lr, batch_size=cfg.batch_size, seed=cfg.seed),
                progress=bar,
            )
        )
    routed = evaluate_row(
        load_routed(base, router, members), tok, world, cfg.tasks, cfg.n_eval, cfg.seed
    )
    return {
        "members_bit_identical": identical,
        "members_accuracy_unchanged": unchanged,
        "routed_final": [a for a, _ in routed],
        "routed_final_stderr": [s for _, s in routed],
        "routed_acc": sum(a for a, _ in routed) / T,
        "router": router.ref,
        "router_skill": router,
    }
