"""Policy skills: a behaviour-cloned policy base on Meta-World and LoRA skills on it (PSEC).

- ``env``: the ``metaworld`` world — tasks, held-out goals, scripted demonstrations, rollouts;
- the network itself is ``skillbank.policynet``: a Hugging Face model (config + safetensors)
  so the library stores, fingerprints and adapts it like any base (``kind = "policy"``);
- ``bc``: behaviour cloning of the base and of LoRA skills on it (through PEFT);
- ``routed``: PSEC's context-aware composition, α(s) from the state (docs/methods.md §16);
- ``evaluate``: success rate of a base, a skill, a merge or a composition;
- ``jobs``: the ``policy-train`` and ``policy-eval`` job kinds, so ``--workers`` and
  ``--executor ray`` parallelise training and rollouts.

Everything here needs the ``policy`` extra (``metaworld``, ``mujoco``, ``gymnasium``).
"""

from __future__ import annotations

import ctypes.util
import os

from ..skill import SkillError

INSTALL = "pip install 'skillbank[policy]'"


class PolicyError(SkillError):
    """Bad input to a policy command: one line for the user."""


def require() -> None:
    """PolicyError naming the install command unless Meta-World can be imported."""
    if "MUJOCO_GL" not in os.environ and ctypes.util.find_library("OSMesa"):
        os.environ["MUJOCO_GL"] = "osmesa"  # MuJoCo reads it on import; only `frames` renders
    try:
        import gymnasium  # noqa: F401
        import metaworld  # noqa: F401
        import mujoco  # noqa: F401
    except ImportError as e:
        raise PolicyError(f"policy skills need Meta-World and MuJoCo ({e.name} is not "
                          f"installed): {INSTALL}") from None
