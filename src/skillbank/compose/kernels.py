"""Compiled loops for the merges that are bound by passes over memory (docs/methods.md §2).

A TIES merge written as tensor operations reads every member's ΔW some ten times
(|τ|, the radix histograms, the mask, the trim, the vote, the agreement, the sums) and
allocates a temporary for each. The loops here read each member three times: two
histogram passes find its trim threshold (an exact radix select), then one pass over all
members, block by block while the block is in cache, trims, votes and takes the disjoint
mean. They are compiled by numba on first use (and cached on disk).

The arithmetic is that of TIES written as tensor operations, operation for operation, in
float32 and in member order, so the results are bit for bit the same (tested against such
a reference). Bit patterns: a non-negative IEEE-754 float orders like its bits read as an
integer, so ``bits & 0x7FFFFFFF`` is |x| as an orderable integer.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_ABS = np.int32(0x7FFFFFFF)


def _compiled(fn):
    """``fn`` compiled, with the machine code cached on disk where numba finds a writable
    place for it (beside this file, else the user's cache directory), uncached otherwise."""
    try:
        return njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # numba: "cannot cache function …: no locator available"
        return njit(nogil=True)(fn)


@_compiled
def radix_select(x: np.ndarray, k: int):
    """(bits of the k-th largest |x|, entries above it, entries equal to it), exactly, for
    1 ≤ k ≤ x.size: the top 16 bits' histogram finds the bucket holding the k-th largest,
    the low 16 bits' histogram inside that bucket finds it (two counting passes)."""
    counts = high_histogram(x)
    above = 0  # entries in buckets above the one scanned
    bucket = counts.size - 1
    while above + counts[bucket] < k:
        above += counts[bucket]
        bucket -= 1
    counts = low_histogram(x, bucket)
    rest = counts.size - 1
    while above + counts[rest] < k:
        above += counts[rest]
        rest -= 1
    return (bucket << 16) | rest, above, counts[rest]


@_compiled
def high_histogram(x: np.ndarray) -> np.ndarray:
    """Counts of the top 16 bits of |x| (float32, 1-D): bins 0 … 0x7FFF."""
    bits = x.view(np.int32)
    hist = np.zeros(1 << 15, dtype=np.int64)
    for j in range(bits.size):
        hist[(bits[j] & _ABS) >> 16] += 1
    return hist


@_compiled
def low_histogram(x: np.ndarray, bucket: int) -> np.ndarray:
    """Counts of the low 16 bits of |x| among the entries whose top 16 bits are ``bucket``."""
    bits = x.view(np.int32)
    hist = np.zeros(1 << 16, dtype=np.int64)
    for j in range(bits.size):
        b = bits[j] & _ABS
        if (b >> 16) == bucket:
            hist[b & 0xFFFF] += 1
    return hist


_BLOCK = 2048  # entries per block: the block's n rows stay in L1/L2 between the passes


@_compiled
def ties_fused(members, weights: np.ndarray, thresholds: np.ndarray,
               tie_ends: np.ndarray, mergekit: bool, frequency: bool) -> np.ndarray:
    """Trim, elect and disjoint-mean of n equal-size 1-D float32 arrays (a typed list,
    so no stacked copy is made), block by block.

    Member i keeps entry j where its |x| bits exceed ``thresholds[i]``, or equal it at an
    index j < ``tie_ends[i]`` (``topk_mask``'s rule: ties at the threshold go to the lowest
    indices; a threshold of -1 keeps everything). The vote is on the trimmed τ̃_i (PEFT's
    convention) or on w_i·τ̃_i (``mergekit``), by their sum or, with ``frequency``, by the
    sum of their signs; ties go to +. An entry agrees where that value has the elected
    sign. PEFT: Σ w_i τ̃_i [agree] / max(1, Σ [agree]); mergekit: Σ w_i τ̃_i [agree] /
    Σ w_i [agree] (1 where that is 0). Sums run over members in order, in float32.

    The conventions differ only in three per-member factors, so the inner loops carry no
    branch (and vectorise): the voted value u_i = a_i·τ̃_i, the sum Σ b_i·u_i [agree], the
    divisor Σ c_i [agree], with (a, b, c) = (1, w, 1) for PEFT and (w, 1, w) for mergekit;
    multiplying by 1 is exact, and for PEFT's integer count, "1 where 0" is max(1, ·).
    """
    n, size = len(members), members[0].size
    one = np.float32(1.0)
    a = weights.copy() if mergekit else np.ones(n, dtype=np.float32)
    b = np.ones(n, dtype=np.float32) if mergekit else weights.copy()
    c = a
    out = np.empty(size, dtype=np.float32)
    kept = np.empty((n, _BLOCK), dtype=np.float32)
    total = np.empty(_BLOCK, dtype=np.float32)
    count = np.empty(_BLOCK, dtype=np.float32)
    num = np.empty(_BLOCK, dtype=np.float32)
    den = np.empty(_BLOCK, dtype=np.float32)
    zero = np.float32(0.0)
    for start in range(0, size, _BLOCK):
        m = min(_BLOCK, size - start)
        total[:m] = zero
        count[:m] = zero
        num[:m] = zero
        den[:m] = zero
        for i in range(n):
            x = members[i][start:start + m]
            bits = x.view(np.int32)
            k = kept[i]
            t, ai = thresholds[i], a[i]
            ties = min(max(tie_ends[i] - start, 0), m)  # entries of this block where = t keeps
            for q in range(ties):
                k[q] = (x[q] if (bits[q] & _ABS) >= t else zero) * ai
            for q in range(ties, m):
                k[q] = (x[q] if (bits[q] & _ABS) > t else zero) * ai
            if frequency:
                for q in range(m):
                    count[q] += (one if k[q] > zero else zero) - (one if k[q] < zero else zero)
            else:
                for q in range(m):
                    total[q] += k[q]
        vote = count if frequency else total
        for q in range(m):
            vote[q] = one if vote[q] >= zero else -one  # the elected sign γ
        for i in range(n):
            k = kept[i]
            bi, ci = b[i], c[i]
            for q in range(m):
                u = k[q]
                agree = u * vote[q] > zero  # exact: γ is ±1
                num[q] += bi * u if agree else zero
                den[q] += ci if agree else zero
        for q in range(m):
            d = den[q]
            out[start + q] = num[q] / (d if d != zero else one)
    return out


@_compiled
def tie_end(x: np.ndarray, threshold: int, keep: int) -> int:
    """The index just past the ``keep``-th entry whose |x| bits equal ``threshold``."""
    bits = x.view(np.int32)
    seen = 0
    for j in range(bits.size):
        if (bits[j] & _ABS) == threshold:
            seen += 1
            if seen == keep:
                return j + 1
    return bits.size




@_compiled
def sign_conflict_counts(members):
    """(entries where ≥ 2 of the equal-size 1-D arrays are non-zero, entries where some
    are positive and some negative), in one pass and no temporaries."""
    n, size = len(members), members[0].size
    shared = 0
    conflicting = 0
    for j in range(size):
        nonzero = 0
        pos = False
        neg = False
        for i in range(n):
            v = members[i][j]
            if v > 0:
                pos = True
                nonzero += 1
            elif v < 0:
                neg = True
                nonzero += 1
        if nonzero >= 2:
            shared += 1
        if pos and neg:
            conflicting += 1
    return shared, conflicting
