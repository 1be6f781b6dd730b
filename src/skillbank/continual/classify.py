"""Continual acquisition of classification skills on an encoder base (docs/methods.md §10).

The same five strategies, budget and R matrix as ``strategies.py``, in the task-incremental
setting of classifiers: every task has its own label set, so the model keeps one **head
per task** beside a shared encoder change. While task t is learned its head (zeros at the
start, as ``acquire.classify``) trains with the LoRA; afterwards it is frozen, and later
tasks can only disturb it through the encoder — that is what forgetting measures here.

- ``seq`` / ``replay`` / ``ewc``: one LoRA on the attention layers shared by every task;
  replay batches mix the past tasks' buffer (each example read by its own task's frozen
  head); EWC's Fisher and anchor cover the LoRA only (heads are never shared).
- ``olora``: a new LoRA per task over the base with the earlier ones merged in, plus the
  orthogonality penalty.
- ``expand``: each task's classifier trained alone on the base (``train_classifier``, the
  same budget); R is the task-aware library; after the last task PSEC's classifier router
  (``compose.route_classify``, its own defaults) answers every task task-agnostically.
  ``train_classifier`` samples the whole train split, the other strategies its first
  ``pool`` rows in the same shuffled order: the same rows whenever a task has at most
  ``pool`` (4000 by default; every Debian task has fewer).

Departure: a task without a head yet cannot be answered, so R[t][i] for i > t is the
base's row b[i] — the majority-class accuracy of task i (``evaluate_classifier`` with no
skill) — for every strategy, and FWT is 0 by construction. No learning curves are taken.
Skills are stored as classifiers carrying every head learned so far (``head.TASK.*``).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from ..acquire.classify import (
    ClassifierRecipe,
    attention_targets,
    classification_world,
    train_classifier,
)
from ..acquire.data import Sampler
from ..acquire.loop import LoopConfig, train
from ..acquire.lora import lora_tensors
from ..acquire.multihead import MultiHead, multi_task_batch
from ..acquire.regularize import ewc_penalty, fisher_diag, olora_penalty, online_fisher
from ..base import Base
from ..evaluate import continual as metrics
from ..evaluate.classify import evaluate_classifier
from ..library import Library
from ..skill import Skill
from ..worlds import get_world
from .replay import ReplaySampler, balanced_buffer

MAX_LENGTH = 64   # tokens per text (ClassifierRecipe's default)


def _lora(model: nn.Module, cfg, seed: int, base: Base) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    for m in model.modules():   # as acquire.classify: no dropout, so runs are deterministic
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    torch.manual_seed(seed)
    targets = list(cfg.target_modules) or attention_targets(model)
    return get_peft_model(model, LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=0.0,
                                            target_modules=targets, bias="none"))


def _snapshot(name: str, base: Base, cfg, peft_model, multi: MultiHead, labels: dict,
              recipe: dict, lineage: list[str], log: dict) -> Skill:
    """A classifier skill: the LoRA's tensors and every head learned so far."""
    tensors = lora_tensors(peft_model)
    for task, head in multi.heads.items():
        tensors[f"head.{task}.weight"] = head.weight.detach().clone()
        tensors[f"head.{task}.bias"] = head.bias.detach().clone()
    targets = sorted(peft_model.peft_config["default"].target_modules)
    config = {"peft_type": "LORA", "r": cfg.rank, "lora_alpha": cfg.alpha,
              "target_modules": targets, "lora_dropout": 0.0, "bias": "none",
              "fan_in_fan_out": False, "use_rslora": False, "task_type": "SEQ_CLS",
              "pooling": "mean", "max_length": MAX_LENGTH,
              "heads": {t: labels[t] for t in multi.heads}}
    if cfg.strategy == "olora" and lineage:
        config["applied_with"] = "the frozen LoRAs in lineage, summed"
    return Skill(name=name, kind="lora", base=base.fingerprint, tensors=tensors, config=config,
                 recipe=recipe, lineage=lineage,
                 metrics={"train": {"curve": log["curve"], "seconds": round(log["seconds"], 2)}})


def _row(base, skill, model, tok, world, tasks, upto: int, b, n: int, seed: int):
    """Accuracy (and stderr) on every task: tasks ≤ ``upto`` through their heads on the
    in-memory ``model``; later tasks have no head yet, so the base's majority row."""
    out = []
    for i, task in enumerate(tasks):
        if i <= upto:
            m = evaluate_classifier(base, skill, world, task, n, seed, loaded=(model, tok))
            out.append((m["accuracy"], m["accuracy_stderr"]))
        else:
            out.append((b[i], 0.0))
    return out


def _prepare(base: Base, cfg):
    world = get_world(cfg.world)
    labels = {t: classification_world(world, t, base) for t in cfg.tasks}
    pools = {t: world.examples(t, cfg.pool, seed=cfg.seed, split="train") for t in cfg.tasks}
    tok = base.load_tokenizer()
    make_batch = multi_task_batch(tok, pools, labels, MAX_LENGTH)
    return world, labels, pools, tok, make_batch


def majority_row(base: Base, world, tasks, n: int, seed: int) -> list[float]:
    return [evaluate_classifier(base, None, world, t, n, seed)["accuracy"] for t in tasks]


def run_continual_classifier(lib: Library, base: Base, cfg, ui, b: list[float] | None = None,
                             joint: list[float] | None = None):
    """``strategies.run_continual`` for classifiers (see the module docstring)."""
    from .strategies import ContinualRun

    cfg.check()
    world, labels, pools, tok, make_batch = _prepare(base, cfg)
    tasks, T = cfg.tasks, len(cfg.tasks)
    b = list(b) if b is not None else majority_row(base, world, tasks, cfg.n_eval, cfg.seed)
    R = [[0.0] * T for _ in range(T)]
    S = [[0.0] * T for _ in range(T)]
    stored: list[Skill] = []
    extra: dict[str, Any] = {}
    shared = cfg.strategy in ("seq", "replay", "ewc")
    loop = LoopConfig(steps=cfg.steps, lr=cfg.lr)
    common = {k: v for k, v in asdict(cfg).items() if k != "tasks"}
    if shared:
        peft_model = _lora(base.load_model(), cfg, cfg.seed, base)
        multi = MultiHead(peft_model, tasks)
    fisher = anchor = None
    heads_done: dict[str, nn.Linear] = {}
    for t, task in enumerate(tasks):
        if cfg.strategy == "expand":
            recipe = expand_recipe(cfg, task)
            with ui.bar(f"expand {t + 1}/{T} {task}", cfg.steps) as bar:
                skill = lib.add(train_classifier(f"cl-expand-{task}", base, recipe, progress=bar))
            stored.append(skill)
            for i in range(T):   # the library answers task i with skill i, or the base
                if i <= t:
                    m = evaluate_classifier(base, stored[i], world, tasks[i], cfg.n_eval, cfg.seed)
                    R[t][i], S[t][i] = m["accuracy"], m["accuracy_stderr"]
                else:
                    R[t][i], S[t][i] = b[i], 0.0
            ui.say(f"expand after {task}: " + " ".join(f"{x:.2f}" for x in R[t]))
            continue
        if not shared:   # olora: the base with the earlier LoRAs merged in, a new LoRA
            peft_model = _lora(base.load_model(stored), cfg, cfg.seed + t, base)
            multi = MultiHead(peft_model, tasks)
            for name, h in heads_done.items():
                multi.heads[name] = h
        multi.add_head(task, len(labels[task]))
        for name, h in multi.heads.items():
            h.requires_grad_(name == task)
        params = {k: p for k, p in multi.named_parameters() if p.requires_grad}
        lora = {k: p for k, p in params.items() if not k.startswith("heads.")}
        sampler: Any = Sampler({task: pools[task]}, cfg.batch_size, cfg.seed)
        extra_loss = None
        if cfg.strategy == "replay":
            sampler = ReplaySampler(pools[task], balanced_buffer(
                {p: pools[p] for p in tasks[:t]}, cfg.replay_memory), cfg.batch_size, cfg.seed,
                cfg.replay_fraction)
        elif cfg.strategy == "ewc" and fisher is not None:
            extra_loss = _bind(ewc_penalty, lora, fisher, anchor, cfg.ewc_lambda)
        elif cfg.strategy == "olora" and stored:
            new_A = {k.removeprefix("encoder.base_model.model.").split(".lora_A.")[0]: p
                     for k, p in lora.items() if ".lora_A." in k}
            old_A = {m: torch.cat([s.tensors[f"{m}.lora_A.weight"] for s in stored])
                     for m in new_A}
            extra_loss = _bind(olora_penalty, old_A, new_A, cfg.olora_lambda)
        multi.train()
        with ui.bar(f"{cfg.strategy} {t + 1}/{T} {task}", cfg.steps) as bar:
            log = train(multi, params, sampler, tok, loop, progress=bar, make_batch=make_batch,
                        extra_loss=extra_loss)
        multi.eval()
        heads_done = dict(multi.heads.items())
        if cfg.strategy == "ewc":
            batches = [make_batch(tok, sampler.batch(cfg.steps + j))
                       for j in range(cfg.fisher_batches)]
            fisher = online_fisher(fisher, fisher_diag(multi, lora, batches), cfg.ewc_gamma)
            anchor = {k: p.detach().clone() for k, p in lora.items()}
            extra.setdefault("fisher_sum", []).append(float(sum(f.sum() for f in fisher.values())))
        lineage = [s.ref for s in stored] if cfg.strategy == "olora" else \
            ([stored[-1].ref] if stored else [])
        recipe = {"method": f"continual-{cfg.strategy}", "sequence": list(tasks), "after": task,
                  "position": t, **common}
        skill = lib.add(_snapshot(f"cl-{cfg.strategy}-{task}", base, cfg, peft_model, multi,
                                  labels, recipe, lineage, log))
        stored.append(skill)
        for i, (acc, se) in enumerate(_row(base, skill, peft_model, tok, world, tasks, t, b,
                                           cfg.n_eval, cfg.seed)):
            R[t][i], S[t][i] = acc, se
        ui.say(f"{cfg.strategy} after {task}: " + " ".join(f"{x:.2f}" for x in R[t]))
    if cfg.strategy == "expand":
        extra.update(_expand_router(lib, base, cfg, stored, R, ui))
        stored.append(extra.pop("router_skill"))
    out_metrics = metrics.summary(R, b, joint)
    run = ContinualRun(config=asdict(cfg), R=R, R_stderr=S, b=b, skills=[s.ref for s in stored],
                       curves={}, extra=extra, metrics=out_metrics)
    lib.add_result(f"continual:{cfg.strategy}", cfg.world, ",".join(tasks),
                   {"R": R, "R_stderr": S, "b": b, "joint": joint, **out_metrics, **extra,
                    "skills": run.skills}, {**asdict(cfg), "base": base.fingerprint})
    return run


def _bind(fn, *args):
    return lambda: fn(*args)


def expand_recipe(cfg, task: str) -> ClassifierRecipe:
    """The classifier ``expand`` trains alone for ``task``: the run's budget and LoRA shape."""
    return ClassifierRecipe(task=task, world=cfg.world, rank=cfg.rank, alpha=cfg.alpha,
                            steps=cfg.steps, lr=cfg.lr, batch_size=cfg.batch_size,
                            max_length=MAX_LENGTH, seed=cfg.seed,
                            target_modules=list(cfg.target_modules) or None)


def _expand_router(lib, base, cfg, members: list[Skill], R, ui) -> dict[str, Any]:
    """Members bit-identical when re-read and unchanged alone; the routed final row."""
    from ..compose.measure import score_by_task
    from ..compose.route_classify import ClassifierRouterRecipe, train_classifier_router

    identical = all(torch.equal(lib.get(m.ref).tensors[k], v)
                    for m in members for k, v in m.tensors.items())
    T = len(cfg.tasks)
    unchanged = all(R[t][i] == R[i][i] for i in range(T) for t in range(i, T))
    recipe = ClassifierRouterRecipe(cfg.world, tuple(cfg.tasks), seed=cfg.seed)
    with ui.bar("expand router", recipe.steps) as bar:
        router = lib.add(train_classifier_router("cl-expand-router", base, members, recipe,
                                                 progress=bar))
    acc = score_by_task(base, [router], cfg.world, cfg.tasks, cfg.n_eval, cfg.seed, lib=lib)
    routed = [acc[t] for t in cfg.tasks]
    world = get_world(cfg.world)
    rows = [len(world.examples(t, cfg.n_eval, seed=cfg.seed, split="eval")) for t in cfg.tasks]
    stderr = [math.sqrt(a * (1 - a) / n) for a, n in zip(routed, rows, strict=True)]  # binomial
    return {"members_bit_identical": identical, "members_accuracy_unchanged": unchanged,
            "routed_final": routed, "routed_final_stderr": stderr,
            "routed_acc": sum(routed) / T, "router": router.ref, "router_skill": router}


def joint_classifier(lib: Library, base: Base, cfg, ui) -> list[float]:
    """Intransigence's reference for classifiers: one LoRA and every head trained on the even
    mixture of all tasks with the sequence's budget (T × steps); stored as ``cl-joint``."""
    world, labels, pools, tok, make_batch = _prepare(base, cfg)
    peft_model = _lora(base.load_model(), cfg, cfg.seed, base)
    multi = MultiHead(peft_model, cfg.tasks)
    for task in cfg.tasks:
        multi.add_head(task, len(labels[task]))
    params = {k: p for k, p in multi.named_parameters() if p.requires_grad}
    steps = cfg.steps * len(cfg.tasks)
    multi.train()
    with ui.bar("joint reference", steps) as bar:
        log = train(multi, params, Sampler(pools, cfg.batch_size, cfg.seed), tok,
                    LoopConfig(steps=steps, lr=cfg.lr), progress=bar, make_batch=make_batch)
    multi.eval()
    recipe = {"method": "continual-joint", "tasks": list(cfg.tasks), "steps": steps,
              **{k: v for k, v in asdict(cfg).items() if k not in ("tasks", "steps")}}
    skill = lib.add(_snapshot("cl-joint", base, cfg, peft_model, multi, labels, recipe, [], log))
    return [a for a, _ in _row(base, skill, peft_model, tok, world, cfg.tasks, len(cfg.tasks),
                               [0.0] * len(cfg.tasks), cfg.n_eval, cfg.seed)]
