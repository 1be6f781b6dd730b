"""The ``metaworld`` world: Meta-World v3 tasks, held-out goals, scripted demonstrations.

Facts this module relies on (docs/methods.md §16): ``metaworld.MT1(task, seed=s)`` fixes 50
goals (``train_tasks``) for benchmark seed ``s``; ``env.set_task(goals[i])`` then ``reset()``
always starts the same episode (object and goal placement are the goal's), and
``reset(seed=…)`` does not change that. So goals are held out *by index*: demonstrations
use goals ``DEMO_GOALS`` (0–24) and evaluation ``EVAL_GOALS`` (25–49) of the same benchmark
seed, never the same episode. The state is Meta-World's 39 numbers with the goal visible
(hand, gripper, two objects, the previous frame, goal); the action is 4 numbers in [-1, 1].

Demonstrations come from Meta-World's own scripted experts (``metaworld.policies``). They
are collected DART-style: the executed action is the expert's plus Gaussian noise of
standard deviation ``noise``, the recorded label is the expert's clean action at the state
reached, so a cloned policy sees how to recover from its own small errors (Laskey et al.
2017). An episode is recorded up to its first success; the expert's rare failures are
dropped and counted.

A dynamics shift (``speed``) multiplies the hand's mocap step (``action_scale``, 0.01 by
default): the same action moves the hand ``speed`` times as far.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..policynet import ACT_DIM
from . import PolicyError, require

N_GOALS = 50
DEMO_GOALS = range(0, 25)
EVAL_GOALS = range(25, 50)
MT10 = ("reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3",
        "drawer-close-v3", "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3",
        "window-close-v3")
HORIZON = 200  # steps per episode (Meta-World's own cap is 500; the experts succeed in < 150)


def tasks() -> tuple[str, ...]:
    """Every Meta-World v3 task with a scripted expert."""
    require()
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS
    from metaworld.policies import ENV_POLICY_MAP

    return tuple(sorted(t for t in ENV_POLICY_MAP if t in ALL_V3_ENVIRONMENTS))


def check_task(task: str) -> str:
    """``task`` if Meta-World has it with an expert; a one-line PolicyError listing them."""
    known = tasks()
    if task not in known:
        raise PolicyError(f"unknown Meta-World task {task!r}; MT10's are {', '.join(MT10)} "
                          f"(all {len(known)}: `skillbank policy tasks`)")
    return task


def check_speed(speed: float) -> float:
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not math.isfinite(speed) \
            or not 0.1 <= speed <= 10:
        raise PolicyError(f"speed (the hand's step multiplier) must be in [0.1, 10], got {speed!r}")
    return float(speed)


def check_horizon(horizon: int) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= 500:
        raise PolicyError(f"horizon must be an integer in [1, 500] (Meta-World's cap), got {horizon!r}")
    return horizon


@lru_cache(maxsize=16)
def _benchmark(task: str, seed: int):
    import metaworld

    bench = metaworld.MT1(task, seed=seed)
    return bench, bench.train_classes[task]()


def make_env(task: str, seed: int, goal: int, speed: float = 1.0):
    """The environment of ``task`` set to goal ``goal`` of benchmark seed ``seed``, reset:
    ``(env, first observation)``. Re-used within a process (one per task and seed)."""
    check_task(task)
    if not 0 <= goal < N_GOALS:
        raise PolicyError(f"goal index {goal} is outside 0–{N_GOALS - 1}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium's checker on Meta-World's observation box
        bench, env = _benchmark(task, seed)
        env.set_task(bench.train_tasks[goal])
        env.action_scale = 0.01 * check_speed(speed)
        obs, _ = env.reset()
    return env, obs


def expert(task: str):
    from metaworld.policies import ENV_POLICY_MAP

    return ENV_POLICY_MAP[check_task(task)]()


@dataclass(frozen=True)
class Episode:
    success: bool
    steps: int  # steps taken (to the first success, or the horizon)
    error: str | None = None  # the simulator's error, if the episode died (counted failed)


def run_episode(act: Callable[[np.ndarray], np.ndarray], task: str, seed: int, goal: int,
                horizon: int = HORIZON, speed: float = 1.0, record: bool = False,
                noise: float = 0.0, rng: np.random.Generator | None = None,
                label: Callable[[np.ndarray], np.ndarray] | None = None):
    """One episode: ``act(state) → action`` until the first success or ``horizon`` steps.
    With ``record``, also the visited states and ``label(state)`` (default: the action) —
    the demonstration recorder. ``noise``: Gaussian noise added to the executed action.
    A simulator error ends the episode as a failure with its message (never raised)."""
    check_horizon(horizon)
    states, labels = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the experts warn that their gains exceed [-1, 1]
        return _episode(act, task, seed, goal, horizon, speed, record, noise, rng, label,
                        states, labels)


def _episode(act, task, seed, goal, horizon, speed, record, noise, rng, label, states, labels):
    try:
        env, obs = make_env(task, seed, goal, speed)
        for t in range(horizon):
            a = np.asarray(act(obs), dtype=np.float64)
            if record:
                states.append(obs.astype(np.float32))
                labels.append((a if label is None else np.asarray(label(obs))).astype(np.float32))
            if noise:
                a = a + noise * rng.standard_normal(ACT_DIM)
            obs, _, terminated, truncated, info = env.step(np.clip(a, -1.0, 1.0))
            if not np.all(np.isfinite(obs)):
                raise FloatingPointError("the simulator returned a non-finite state")
            if info.get("success"):
                ep = Episode(True, t + 1)
                break
            if terminated or truncated:
                ep = Episode(False, t + 1)
                break
        else:
            ep = Episode(False, horizon)
    except PolicyError:
        raise
    except Exception as e:  # noqa: BLE001 — MuJoCo's errors have many types; one episode fails
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        ep = Episode(False, len(states), f"{type(e).__name__}: {msg}"[:200])
    return (ep, states, labels) if record else ep


@dataclass(frozen=True)
class Demos:
    """Demonstrations of one task: ``obs`` [N, 39] and ``act`` [N, 4] (float32)."""

    task: str
    obs: np.ndarray
    act: np.ndarray
    episodes: int
    expert_failures: int

    @property
    def steps(self) -> int:
        return len(self.obs)


def demo_key(task: str, n: int, seed: int, noise: float, horizon: int, speed: float) -> str:
    return hashlib.sha256(repr((task, n, seed, float(noise), horizon, float(speed))).encode()
                          ).hexdigest()[:24]


def demonstrations(task: str, n: int, seed: int = 0, noise: float = 0.1,
                   horizon: int = HORIZON, speed: float = 1.0,
                   cache: Path | None = None) -> Demos:
    """``n`` successful expert episodes on demonstration goals (cycling through 0–24; a
    goal met again gets fresh noise), deterministic in all arguments. With ``cache`` (a
    directory), read from there if made before, else written there whole (temp + rename)."""
    check_task(task)
    check_horizon(horizon)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1000:
        raise PolicyError(f"demonstrations must be an integer in [1, 1000], got {n!r}")
    if not (isinstance(noise, int | float) and math.isfinite(noise) and 0 <= noise <= 1):
        raise PolicyError(f"demonstration noise must be in [0, 1], got {noise!r}")
    path = cache / f"{demo_key(task, n, seed, noise, horizon, speed)}.npz" if cache else None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                return Demos(task, f["obs"], f["act"], int(f["episodes"]), int(f["failures"]))
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a damaged cache entry is made again
    pol = expert(task)
    obs, act, kept, failures, attempt = [], [], 0, 0, 0
    while kept < n:
        if attempt >= 3 * n + 10:
            raise PolicyError(f"the {task} expert failed {failures} of {attempt} demonstrations")
        goal = DEMO_GOALS[attempt % len(DEMO_GOALS)]
        rng = np.random.default_rng([seed, attempt])
        ep, states, labels = run_episode(pol.get_action, task, seed, goal, horizon, speed,
                                         record=True, noise=noise, rng=rng)
        attempt += 1
        if not ep.success:
            failures += 1
            continue
        obs += states
        act += labels
        kept += 1
    demos = Demos(task, np.stack(obs), np.stack(act), kept, failures)
    if path is not None:
        _save(path, demos)
    return demos


def _save(path: Path, demos: Demos) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, obs=demos.obs, act=demos.act, episodes=demos.episodes,
                     failures=demos.expert_failures)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written (read-only, full disk) only costs time


def eval_goals(episodes: int) -> list[int]:
    """The first ``episodes`` held-out goals; at most 25 (a deterministic policy on a goal
    already seen would repeat its episode exactly)."""
    if isinstance(episodes, bool) or not isinstance(episodes, int) or \
            not 1 <= episodes <= len(EVAL_GOALS):
        raise PolicyError(f"episodes must be in [1, {len(EVAL_GOALS)}] (one per held-out goal), "
                          f"got {episodes!r}")
    return list(EVAL_GOALS[:episodes])
