"""Rendered frames of a policy's episode: a strip of still images per skill for the report.

MuJoCo renders offscreen through OSMesa (Debian's ``libosmesa6``; chosen by ``require`` when
it is installed and ``MUJOCO_GL`` is unset) or EGL (``MUJOCO_GL=egl`` with a GPU). Without
either, rendering raises ``NoRenderer`` with one line that says so, and callers write no
images. The episode is the same one ``run_episode`` runs (same task, benchmark seed and
goal); the camera is Meta-World's ``corner2``, whose image MuJoCo returns bottom row first.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from . import PolicyError, require
from .env import HORIZON, _benchmark, check_horizon, check_speed, check_task

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
    bench, _ = _benchmark(task, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            env = bench.train_classes[task](render_mode="rgb_array", camera_name=CAMERA,
                                            width=size, height=size)
            env.set_task(bench.train_tasks[goal])
            env.action_scale = 0.01 * speed
            obs, _ = env.reset()
            shots, success = [env.render()[::-1].copy()], False
            for _ in range(horizon):
                a = np.clip(np.asarray(act(obs), dtype=np.float64), -1.0, 1.0)
                obs, _, _, _, info = env.step(a)
                shots.append(env.render()[::-1].copy())
                if info.get("success"):
                    success = True
                    break
        except PolicyError:
            raise
        except Exception as e:  # noqa: BLE001 — OpenGL/EGL/OSMesa fail with many types
            raise NoRenderer("no offscreen renderer for MuJoCo (install Debian's libosmesa6, "
                             "or set MUJOCO_GL=egl on a machine with a GPU): "
                             f"{type(e).__name__}") from None
        finally:
            if "env" in locals():
                env.close()
    pick = np.linspace(0, len(shots) - 1, frames).round().astype(int)
    return np.stack([shots[i] for i in pick]), success


def save_strip(frames: np.ndarray, path: Path) -> Path:
    """The frames side by side as one PNG."""
    import matplotlib.image

    matplotlib.image.imsave(path, np.concatenate(list(frames), axis=1))
    return path
