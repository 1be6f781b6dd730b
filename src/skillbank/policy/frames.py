"""Rendered frames of a policy's episode: a strip of still images per skill for the report.

MuJoCo renders offscreen through OSMesa (Debian's ``libosmesa6``; chosen by ``require`` when
it is installed and ``MUJOCO_GL`` is unset) or EGL (``MUJOCO_GL=egl`` with a GPU). Without
either, rendering raises ``NoRenderer`` with one line that says so, and callers write no
images. The episode is the same one ``run_episode`` runs (same task, benchmark seed and
goal), run twice: once unrendered for its length, once rendering only the frames kept
(OSMesa renders in software: ~0.2 s a frame). The camera is Meta-World's ``corner2``,
whose image MuJoCo returns bottom row first.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from . import PolicyError, require
from .env import HORIZON, _benchmark, check_horizon, check_speed, check_task, run_episode

CAMERA = "corner2"


class NoRenderer(PolicyError):
    """MuJoCo cannot render offscreen on this machine."""


def episode_frames(act, task: str, seed: int, goal: int, frames: int = 6, size: int = 96,
                   horizon: int = HORIZON, speed: float = 1.0) -> tuple[np.ndarray, bool]:
    """``frames`` images [frames, size, size, 3] (uint8) evenly spaced over one episode of
    ``act`` (to its first success or ``horizon``), and whether it succeeded."""
    require()
    check_task(task), check_horizon(horizon), check_speed(speed)
    if not 1 <= frames <= 64 or not 16 <= size <= 512:
        raise PolicyError("frames must be in [1, 64] and size in [16, 512]")
    ep = run_episode(act, task, seed, goal, horizon, speed)  # first, its length, unrendered
    pick = set(np.linspace(0, ep.steps, frames).round().astype(int).tolist())
    bench, _ = _benchmark(task, seed)
    shots = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            env = bench.train_classes[task](render_mode="rgb_array", camera_name=CAMERA,
                                            width=size, height=size)
            env.set_task(bench.train_tasks[goal])
            env.action_scale = 0.01 * speed
            obs, _ = env.reset()
            for t in range(ep.steps + 1):  # then again, rendered only at the frames kept
                if t in pick:
                    shots.append(env.render()[::-1].copy())
                if t < ep.steps:
                    a = np.clip(np.asarray(act(obs), dtype=np.float64), -1.0, 1.0)
                    obs, *_ = env.step(a)
        except PolicyError:
            raise
        except Exception as e:  # noqa: BLE001 — OpenGL/EGL/OSMesa fail with many types
            raise NoRenderer("no offscreen renderer for MuJoCo (install Debian's libosmesa6, "
                             "or set MUJOCO_GL=egl on a machine with a GPU): "
                             f"{type(e).__name__}") from None
        finally:
            if "env" in locals():
                env.close()
    while len(shots) < frames:  # an episode shorter than ``frames`` steps repeats its last
        shots.append(shots[-1])
    return np.stack(shots[:frames]), ep.success


def save_strip(frames: np.ndarray, path: Path) -> Path:
    """The frames side by side as one PNG."""
    import matplotlib.image

    matplotlib.image.imsave(path, np.concatenate(list(frames), axis=1))
    return path
