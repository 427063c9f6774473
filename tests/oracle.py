"""Independent numpy implementation of SampleMix's weighting (SPEC §3, eq. 2-4).

Written from the paper's equations, not from the library, so that the Spark
results can be checked against it.
"""

from __future__ import annotations

import numpy as np


def minmax(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x, dtype=float)


def sampling_weights(q: np.ndarray, d: np.ndarray, alpha: float) -> np.ndarray:
    return alpha * minmax(np.asarray(d, float)) + (1 - alpha) * minmax(np.asarray(q, float))


def expected_counts(p: np.ndarray, n_tokens: np.ndarray, tau: float, target_tokens: float,
                    budget_mode: str = "documents", cap: float | None = None) -> np.ndarray:
    """c(x) from eq. 4, sized in documents (eq. 3) or so that sum c(x) n_tokens(x) = T_tgt.

    With a cap, c(x) = min(s w(x), cap) with s chosen so the budget is still met.
    """
    n_tokens = np.asarray(n_tokens, float)
    logits = np.asarray(p, float) / tau
    w = np.exp(logits - logits.max())
    if budget_mode == "documents":
        units, target = np.ones_like(w), target_tokens / n_tokens.sum() * len(w)
    else:
        units, target = n_tokens, target_tokens
    if cap is None:
        return target * w / np.sum(w * units)
    return np.minimum(_water_level(w, units, target, cap) * w, cap)


def _water_level(w: np.ndarray, units: np.ndarray, target: float, cap: float) -> float:
    """The scale s with sum min(s w, cap) units = target: cap the j largest weights for the first j that fits."""
    order = np.argsort(-w, kind="stable")
    ws, us = w[order], units[order]
    capped_units = np.concatenate([[0.0], np.cumsum(us)])
    free = np.concatenate([np.cumsum((ws * us)[::-1])[::-1], [0.0]])
    for j in range(len(w) + 1):
        if free[j] <= 0:
            return np.inf
        scale = (target - cap * capped_units[j]) / free[j]
        if j == len(w) or scale * ws[j] <= cap:
            return scale
    raise AssertionError("unreachable")


def bernoulli_sigma(c: np.ndarray) -> float:
    """Standard deviation of sum(count) when count = floor(c) + Bernoulli(frac(c))."""
    frac = c - np.floor(c)
    return float(np.sqrt(np.sum(frac * (1 - frac))))


# Hash scheme v2's purposes: the salt string hashed after the seed.
HOLDOUT_SPLIT, COUNT_DRAW = "holdout-split", "count-draw"


def spark_xxhash64_uniform(doc_id: str, seed: int, purpose: str | None = None) -> float:
    """The uniform of ``xxhash64(doc_id, seed)`` (scheme v1) or ``xxhash64(doc_id, seed, purpose)`` (v2).

    Recomputed with the xxhash package. Spark hashes its arguments in turn, each
    with the previous hash as seed, starting from 42: the UTF-8 bytes of the
    string, then the 32-bit seed as four little-endian bytes, then the purpose's
    UTF-8 bytes. The top 53 bits of the (unsigned) result make the uniform.
    """
    import struct

    import xxhash

    value = xxhash.xxh64_intdigest(doc_id.encode("utf-8"), seed=42)
    value = xxhash.xxh64_intdigest(struct.pack("<i", seed), seed=value)
    if purpose is not None:
        value = xxhash.xxh64_intdigest(purpose.encode("utf-8"), seed=value)
    return (value >> 11) / float(2**53)


def spark_stream_key(seed: int, epoch: int, doc_id: str, replica: int) -> int:
    """``xxhash64(long seed, int epoch, doc_id, int replica)`` as Spark's signed 64-bit value (the stream order).

    A long is hashed as eight little-endian bytes, an int as four, a string as its
    UTF-8 bytes, each with the previous hash as seed, starting from 42.
    """
    import struct

    import xxhash

    value = xxhash.xxh64_intdigest(struct.pack("<q", seed), seed=42)
    value = xxhash.xxh64_intdigest(struct.pack("<i", epoch), seed=value)
    value = xxhash.xxh64_intdigest(doc_id.encode("utf-8"), seed=value)
    value = xxhash.xxh64_intdigest(struct.pack("<i", replica), seed=value)
    return value - 2**64 if value >= 2**63 else value


_M64 = 2**64


def _fmix64(x: int) -> int:
    for multiplier in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
        x = ((x ^ (x >> 33)) * multiplier) % _M64
    return x ^ (x >> 33)


def shingle_hashes(text: str | None) -> np.ndarray:
    """The 13-word shingle hashes, one Python loop per byte and word, as int64 in unsigned order.

    Words are the pyarrow-lower-cased text cut on [\\t\\n\\x0b\\f\\r ]; a word is
    fmix64(sum (byte+1) * 0x100000001B3**i  xor  length * 0xC2B2AE3D27D4EB4F), and a
    window sum word[i+k] * 0x9E3779B97F4A7C15**k, all mod 2^64.
    """
    import re

    import pyarrow as pa
    import pyarrow.compute as pc

    lowered = pc.utf8_lower(pa.array([text or ""])).to_pylist()[0]
    words = [w.encode("utf-8") for w in re.split("[\t\n\x0b\f\r ]+", lowered) if w]
    hashed = [_fmix64(sum((b + 1) * pow(0x100000001B3, i, _M64) for i, b in enumerate(w)) % _M64
                      ^ (len(w) * 0xC2B2AE3D27D4EB4F % _M64)) for w in words]
    windows = {sum(hashed[i + k] * pow(0x9E3779B97F4A7C15, k, _M64) for k in range(13)) % _M64
               for i in range(len(words) - 12)}
    return np.array(sorted(windows), dtype=np.uint64).view(np.int64)
