"""Continual-learning metrics on the accuracy matrix (docs/methods.md §10).

``R[t][i]`` is the accuracy on skill ``i`` after learning skill ``t`` (both 0-based, T tasks
learned in order 0..T-1); ``b[i]`` is the accuracy on skill ``i`` before any training. All
functions are pure: lists (or arrays) in, floats or dicts out.

- ACC, BWT, FWT: Lopez-Paz & Ranzato 2017 (GEM), §5 of the paper. The paper (and avalanche)
  average BWT over the T-1 earlier tasks and FWT over the T-1 later tasks; GEM's own
  ``metrics.py`` fills a length-T vector with zeros where the term is undefined and takes its
  mean, i.e. divides both sums by T. Both are here, by name (``convention="paper"`` /
  ``"gem_code"``).
- Forgetting: avalanche's ``R[k][k] − R[t][k]`` (drop since the task was learned) and
  Chaudhry et al. 2018 (RWalk), Eq. 9–10: ``f_k^t = max_{l<t} R[l][k] − R[t][k]``, averaged
  over ``k < t``.
- Intransigence: Chaudhry et al. 2018, Eq. 11: ``I_k = a*_k − R[k][k]`` with ``a*`` a model
  trained jointly on all tasks.
- LIBERO (Liu et al. 2023), §5: FWT/NBT/AUC from each task's learning curve.
- Skill-acquisition efficiency (Chollet 2019, *On the Measure of Intelligence*): examples
  seen until a target accuracy is first reached, with and without the library's help.
"""

from __future__ import annotations

from collections.abc import Sequence

Matrix = Sequence[Sequence[float]]
CONVENTIONS = ("paper", "gem_code")


def _check(R: Matrix, b: Sequence[float] | None = None) -> int:
    T = len(R)
    if T == 0 or any(len(row) != T for row in R):
        raise ValueError(
            f"R must be a non-empty square T×T matrix; got row lengths {[len(r) for r in R]}"
        )
    if b is not None and len(b) != T:
        raise ValueError(f"b has {len(b)} entries, R has {T} tasks")
    return T


def _convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose from {', '.join(CONVENTIONS)}")


def acc(R: Matrix) -> float:
    """Average accuracy at the end: ACC = (1/T) Σ_i R[T-1][i] (GEM Eq. 2)."""
    T = _check(R)
    return sum(R[T - 1]) / T


def bwt(R: Matrix, convention: str = "paper") -> float:
    """Backward transfer Σ_{i<T-1} (R[T-1][i] − R[i][i]), divided by T-1 (GEM paper Eq. 3,
    avalanche) or by T (``gem_code``: GEM's metrics.py). 0.0 for a single task."""
    _convention(convention)
    T = _check(R)
    total = sum(R[T - 1][i] - R[i][i] for i in range(T - 1))
    n = T - 1 if convention == "paper" else T
    return total / n if n else 0.0


def fwt(R: Matrix, b: Sequence[float], convention: str = "paper") -> float:
    """Forward transfer Σ_{i≥1} (R[i-1][i] − b[i]), divided by T-1 (GEM paper Eq. 4,
    avalanche) or by T (``gem_code``). 0.0 for a single task."""
    _convention(convention)
    T = _check(R, b)
    total = sum(R[i - 1][i] - b[i] for i in range(1, T))
    n = T - 1 if convention == "paper" else T
    return total / n if n else 0.0


def forgetting_avalanche(R: Matrix, t: int | None = None) -> dict[int, float]:
    """Avalanche's per-task forgetting after learning task ``t`` (default the last):
    ``{k: R[k][k] − R[t][k]}`` for every ``k < t``."""
    T = _check(R)
    t = T - 1 if t is None else t
    return {k: R[k][k] - R[t][k] for k in range(t)}


def forgetting_chaudhry(R: Matrix, t: int | None = None) -> float:
    """Chaudhry et al. 2018 average forgetting after task ``t`` (default the last):
    (1/t) Σ_{k<t} (max_{l<t} R[l][k] − R[t][k]); 0.0 when ``t == 0``.

    The maximum runs over every evaluation before ``t`` (l from 0, so also the ones before
    task k was learned, as in Eq. 9; they are ≤ the post-learning peak in practice)."""
    T = _check(R)
    t = T - 1 if t is None else t
    if t == 0:
        return 0.0
    return sum(max(R[j][k] for j in range(t)) - R[t][k] for k in range(t)) / t


def intransigence(R: Matrix, joint: Sequence[float]) -> dict[int, float]:
    """Chaudhry et al. 2018 Eq. 11: ``{k: a*_k − R[k][k]}`` with ``joint[k] = a*_k``, the
    accuracy on task k of a reference trained on all tasks jointly."""
    T = _check(R, joint)
    return {k: joint[k] - R[k][k] for k in range(T)}


def held_at_best(curve: Sequence[float]) -> list[float]:
    """LIBERO: from the first checkpoint at the curve's maximum on, the curve keeps that value
    (the best checkpoint is the one kept)."""
    if not curve:
        raise ValueError("empty learning curve")
    best = max(curve)
    at = list(curve).index(best)
    return [*curve[:at], *[best] * (len(curve) - at)]


def libero(curves: Sequence[Sequence[float]], R: Matrix) -> dict[str, object]:
    """LIBERO's FWT, NBT and AUC (Liu et al. 2023, §5), 0-based.

    ``curves[k]``: accuracy on task k at the checkpoints evaluated while learning it (LIBERO
    uses 11, epochs 0,5,…,50). ``R[τ][k]`` for τ > k: accuracy on k after learning τ.
    c_kk = max(curves[k]);
    FWT_k = mean of ``held_at_best(curves[k])``;
    NBT_k = (1/(K−1−k)) Σ_{τ>k} (c_kk − R[τ][k]), and 0 for the last task (still counted in
    the mean, as in LIBERO);
    AUC_k = (FWT_k + Σ_{τ>k} R[τ][k]) / (K − k).
    Departure: LIBERO reads c_{τ,k} at τ's best checkpoint; we use R as measured at the end
    of learning τ. Returns per-task lists and their means.
    """
    K = _check(R)
    if len(curves) != K:
        raise ValueError(f"{len(curves)} learning curves for {K} tasks")
    f, n, a = [], [], []
    for k in range(K):
        held = held_at_best(curves[k])
        fk = sum(held) / len(held)
        ckk = max(curves[k])
        later = [R[tau][k] for tau in range(k + 1, K)]
        n.append(sum(ckk - x for x in later) / len(later) if later else 0.0)
        f.append(fk)
        a.append((fk + sum(later)) / (K - k))
    return {
        "fwt": sum(f) / K,
        "nbt": sum(n) / K,
        "auc": sum(a) / K,
        "fwt_k": f,
        "nbt_k": n,
        "auc_k": a,
    }


def examples_to_reach(curve: Sequence[tuple[int, float]], target: float) -> int | None:
    """Smallest number of training examples seen at which the learning curve
    ``[(examples seen, accuracy), ...]`` reaches ``target`` (≥); None if it never does."""
    for seen, accuracy in sorted(curve):
        if accuracy >= target:
            return int(seen)
    return None


def acquisition_efficiency(
    with_library: Sequence[tuple[int, float]],
    without_library: Sequence[tuple[int, float]],
    target: float,
) -> dict[str, float | int | None]:
    """Chollet's skill-acquisition efficiency, operationalised: examples needed to reach
    ``target`` with the library's help and without it, and ``saving`` = without / with
    (> 1: the library made the skill cheaper to acquire; None if either never reaches it,
    ``inf`` if the library's curve starts at the target, i.e. needs zero examples)."""
    n_with = examples_to_reach(with_library, target)
    n_without = examples_to_reach(without_library, target)
    if n_with is None or n_without is None:
        saving = None
    else:
        saving = n_without / n_with if n_with else float("inf")
    return {
        "target": target,
        "with_library": n_with,
        "without_library": n_without,
        "saving": saving,
    }


def summary(
    R: Matrix, b: Sequence[float], joint: Sequence[float] | None = None
) -> dict[str, object]:
    """Every matrix metric at the end of the sequence, as JSON-ready data."""
    out: dict[str, object] = {
        "acc": acc(R),
        "bwt": bwt(R),
        "bwt_gem_code": bwt(R, "gem_code"),
        "fwt": fwt(R, b),
        "fwt_gem_code": fwt(R, b, "gem_code"),
        "forgetting_avalanche": {str(k): v for k, v in forgetting_avalanche(R).items()},
        "forgetting_avalanche_mean": _mean(list(forgetting_avalanche(R).values())),
        "forgetting_chaudhry": forgetting_chaudhry(R),
    }
    if joint is not None:
        it = intransigence(R, joint)
        out["intransigence"] = {str(k): v for k, v in it.items()}
        out["intransigence_mean"] = _mean(list(it.values()))
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0
