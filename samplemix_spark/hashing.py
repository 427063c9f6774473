"""Every hash that picks documents: one module, at the bottom of the package.

Spark side, ``uniform`` gives a document a uniform number in [0, 1) for one
purpose (``HOLDOUT_SPLIT``, ``COUNT_DRAW``, ``KMEANS_SAMPLE``,
``ANNOTATION_SAMPLE``): the same on every engine, rerun and partitioning. Under
hash scheme ``v2`` (every new warehouse) the purpose is hashed in with the
document and the seed, ``xxhash64(doc_id, seed, purpose)``, so no choice of
seeds makes two purposes pick the same documents; ``order_key`` gives the
64-bit hash itself, as a sort key (``SYSTEMATIC_ORDER``). Scheme ``v1``,
``xxhash64(doc_id, seed)`` for every purpose, is what warehouses written before
``v2`` keep until they are rebuilt with ``samplemix run --force``: there, equal
seeds make the k-means sample, the annotation sample and the extra Bernoulli
copy fall on the same documents, and ``mixing.seed == ingest.holdout_seed``
leaves every training document with u >= the held-out fraction (the token
budget is then missed by about that fraction's share of the rounding).

Python side (executors and the driver, no Spark), ``doc_key`` gives a document a
64-bit key for one named purpose (``HOLDOUT_ORDER``, ``HOLDOUT_WINDOW``): the
purpose is part of the hashed text, so two purposes never share a key and a
choice made for one purpose is independent of every other. ``shingle_hashes``
gives the 13-word shingles that decide which held-out documents are near-copies
of training text. ``stream_key`` (Spark side) orders a proxy's training copies.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np
from pyspark.sql import Column
from pyspark.sql import functions as F

# 2**53: uniforms built from the top 53 bits of a 64-bit hash are exact doubles in [0, 1).
_TWO_POW_53 = float(2**53)

SCHEMES = ("v1", "v2")
CURRENT_SCHEME = "v2"

# Spark-side purposes (``uniform``).
HOLDOUT_SPLIT = "holdout-split"          # which documents ingest holds out
COUNT_DRAW = "count-draw"                # the Bernoulli draw of the extra copy
KMEANS_SAMPLE = "kmeans-sample"          # which embeddings k-means is fitted on
ANNOTATION_SAMPLE = "annotation-sample"  # which documents are sent for annotation
SYSTEMATIC_ORDER = "systematic-order"    # the order of documents of equal length in systematic rounding
LABEL_SAMPLE = "label-sample"            # which labelled rows the quality evaluator trains on, above max_labels
PERPLEXITY_HALF = "perplexity-half"      # which reference model trains on a text (the other one scores it)
PERPLEXITY_ORDER = "perplexity-order"    # the order of a reference model's training text
PERPLEXITY_WINDOW = "perplexity-window"  # where a document's scored window starts
PERPLEXITY_SAMPLE = "perplexity-sample"  # which perplexity scores the mix's q quantiles come from
# Python-side purposes (``doc_key``).
HOLDOUT_ORDER = "holdout-order"    # which held-out documents are scored, and which at every evaluation step
HOLDOUT_WINDOW = "holdout-window"  # where a long held-out document's scored window starts
SWARM_DESIGN = "swarm-design"      # the random mixtures of a proxy swarm
QUADMIX_SEARCH = "quadmix-search"  # the QuaDMix parameter settings a search draws
QUADMIX_TIES = "quadmix-ties"      # where a document lies inside its tie group's share of QuaDMix ranks
QUADMIX_BINS = "quadmix-bins"      # which documents cut a large domain's QuaDMix ranks into equal-mass bins
TUNE_SAMPLE = "tune-sample"        # which documents a parameter search mixes, above tune.sample_docs
SYSTEMATIC_OFFSET = "systematic-offset"  # the one uniform offset of a systematic rounding


def stored_hash(sha256_hex: Column) -> Column:
    """The first 128 bits of a text's SHA-256 (hex): a hashed ``doc_id``, and the ``text_hash`` documents store."""
    return F.substring(sha256_hex, 1, 32)


def uniform(doc_id: Column, seed: int, purpose: str, scheme: str) -> Column:
    """A uniform number in [0, 1) for ``purpose`` under hash ``scheme`` (see the module doc).

    The top 53 bits of the 64-bit hash fill a double's mantissa exactly.
    """
    if scheme == "v2":
        hashed = F.xxhash64(doc_id, F.lit(seed), F.lit(purpose))
    elif scheme == "v1":
        hashed = F.xxhash64(doc_id, F.lit(seed))
    else:
        raise ValueError(f"hash scheme {scheme!r} is not one of {SCHEMES} (an 'auto' scheme must be resolved "
                         "against the warehouse first)")
    return F.shiftrightunsigned(hashed, 11).cast("double") / F.lit(_TWO_POW_53)


def order_key(doc_id: Column, seed: int, purpose: str) -> Column:
    """A 64-bit sort key of each document for ``purpose``: the same on every engine and partitioning."""
    return F.xxhash64(doc_id, F.lit(seed), F.lit(purpose))


def purpose_seed(purpose: str, seed: int) -> int:
    """A 64-bit seed for a random generator that serves one purpose (e.g. ``SWARM_DESIGN``)."""
    return doc_key(purpose, "", seed)


def doc_key(purpose: str, doc_id: str, seed: int = 0) -> int:
    """A 64-bit key of ``doc_id`` for ``purpose``: BLAKE2b, so it is the same in every process and Python."""
    digest = hashlib.blake2b(f"{purpose}:{seed}:{doc_id}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def stream_key(seed: Column, epoch: Column, doc_id: Column, replica: Column) -> Column:
    """The order of a proxy's training copies: ``xxhash64(seed, epoch, doc_id, replica)`` as a signed 64-bit
    key, ascending (Spark side, the same on every engine).

    The arguments are cast to fixed types (long, int, string, int) because xxhash64
    hashes a value's binary form: an int and a long of equal value hash apart.
    """
    return F.xxhash64(seed.cast("long"), epoch.cast("int"), doc_id.cast("string"), replica.cast("int"))


SHINGLE_WORDS = 13
# Word separators: the ASCII whitespace class [\t\n\x0b\f\r ] (not str.split's Unicode-wide one). In UTF-8
# these byte values occur only as those characters, so words are cut on bytes.
_SEPARATOR_BYTES = np.zeros(256, dtype=bool)
_SEPARATOR_BYTES[[9, 10, 11, 12, 13, 32]] = True
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # combines a window's 13 word hashes
_BYTE_BASE = 0x100000001B3                    # the polynomial over a word's bytes (odd, so invertible mod 2^64)
_LENGTH_MIX = np.uint64(0xC2B2AE3D27D4EB4F)
_BYTE_VALUES = np.arange(1, 257, dtype=np.uint64)  # byte + 1
# Texts are hashed in runs of about this many bytes: the arrays below take about 40 bytes per text byte.
SHINGLE_CHUNK_BYTES = 1 << 20


@functools.lru_cache(maxsize=4)
def _powers(base: int, n: int) -> np.ndarray:
    """base**0 .. base**(n-1) mod 2^64 (cached: every run of text reuses the table)."""
    steps = np.full(n, base, dtype=np.uint64)
    steps[:1] = 1
    table = np.multiply.accumulate(steps)
    table.flags.writeable = False
    return table


def _power_table(base: int, n: int) -> np.ndarray:
    """At least ``n`` powers of ``base``: the cached table for a run of text, a larger one for a longer text."""
    return _powers(base, max(n, SHINGLE_CHUNK_BYTES + 1))


def _fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: every input bit reaches every output bit."""
    x = x ^ (x >> np.uint64(33))
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> np.uint64(33))


def _word_spans(data: np.ndarray, starts_of_texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) byte of every word in ``data``; no word crosses a text's start."""
    word_byte = ~_SEPARATOR_BYTES[data]
    text_start = np.zeros(len(data) + 1, dtype=bool)
    text_start[starts_of_texts] = True
    before = np.concatenate(([True], ~word_byte[:-1])) | text_start[:-1]
    after = np.concatenate((~word_byte[1:], [True])) | text_start[1:]
    return np.flatnonzero(word_byte & before), np.flatnonzero(word_byte & after) + 1


def _polynomial_windows(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, base: int) -> np.ndarray:
    """For each span [start, end) of ``values``: sum of values[start + j] * base**j, mod 2^64.

    One prefix sum of ``values[i] * base**i`` serves every span: a span's
    difference of two prefixes carries ``base**start``, which the inverse power
    removes. So all spans cost a few array operations, whatever their number.
    """
    with np.errstate(over="ignore"):
        terms = values * _power_table(base, len(values))[:len(values)]
        prefix = np.zeros(len(values) + 1, dtype=np.uint64)
        np.cumsum(terms, dtype=np.uint64, out=prefix[1:])
        inverse = pow(base, -1, 2**64)
        return (prefix[ends] - prefix[starts]) * _power_table(inverse, len(values) + 1)[starts]


def _word_hashes(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each word: a polynomial over its bytes (each plus one, so a zero byte counts), then mixed
    with its length through ``_fmix64``."""
    with np.errstate(over="ignore"):
        polynomial = _polynomial_windows(_BYTE_VALUES[data], starts, ends, _BYTE_BASE)
        return _fmix64(polynomial ^ ((ends - starts).astype(np.uint64) * _LENGTH_MIX))


def _chunk_shingles(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(text index, shingle hash) of every 13-word window of the texts ``data[offsets[i]:offsets[i+1]]``."""
    starts, ends = _word_spans(data, offsets[:-1]) if len(data) else (np.zeros(0, np.int64),) * 2
    windows = len(starts) - SHINGLE_WORDS + 1
    if windows <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    words = _word_hashes(data, starts, ends)
    text_of_word = np.searchsorted(offsets, starts, side="right") - 1
    first = np.arange(windows)
    shingles = _polynomial_windows(words, first, first + SHINGLE_WORDS, int(_MULTIPLIER))
    inside = text_of_word[:windows] == text_of_word[SHINGLE_WORDS - 1:]
    return text_of_word[:windows][inside], shingles[inside]


def _distinct_per_text(texts: np.ndarray, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each text's distinct hashes, sorted by text and then by hash."""
    order = np.lexsort((hashes, texts))
    texts, hashes = texts[order], hashes[order]
    first = np.ones(len(hashes), dtype=bool)
    first[1:] = (texts[1:] != texts[:-1]) | (hashes[1:] != hashes[:-1])
    return texts[first], hashes[first]


def shingle_rows(texts, chunk_bytes: int = SHINGLE_CHUNK_BYTES,
                 distinct: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The 13-word shingle hashes of every text in a pyarrow string array (or a list of str).

    Returns (row index, hash as int64): with ``distinct``, each text's distinct
    hashes sorted by row and then by unsigned hash; without, every window in text
    order (for a caller that only looks hashes up). A null, empty or under-13-word
    text has none. Texts are lower-cased by pyarrow and cut into words on ASCII
    whitespace; a word's hash is a polynomial over its bytes, and a window's hash
    a polynomial over its 13 word hashes (both mod 2^64), so no window is built as
    a string. Everything runs as numpy array operations over runs of about
    ``chunk_bytes`` of text, never a Python loop per word or text; the same code
    runs in every engine's Python workers, so every engine cuts and hashes the
    same words.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    array = pa.array(texts, pa.large_string()) if isinstance(texts, list) else texts.cast(pa.large_string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    lowered = pc.utf8_lower(pc.fill_null(array, ""))
    offsets = np.frombuffer(lowered.buffers()[1], dtype=np.int64)[lowered.offset:lowered.offset + len(lowered) + 1]
    data = (np.frombuffer(lowered.buffers()[2], dtype=np.uint8) if lowered.buffers()[2] is not None
            else np.zeros(0, dtype=np.uint8))
    rows, hashes = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.uint64)]
    first = 0
    while first < len(lowered):
        last = min(max(int(np.searchsorted(offsets, offsets[first] + chunk_bytes, side="right")) - 1, first + 1),
                   len(lowered))
        base = offsets[first]
        chunk_rows, chunk_hashes = _chunk_shingles(data[base:offsets[last]], offsets[first:last + 1] - base)
        if distinct:
            chunk_rows, chunk_hashes = _distinct_per_text(chunk_rows, chunk_hashes)
        rows.append(chunk_rows + first)
        hashes.append(chunk_hashes)
        first = last
    return np.concatenate(rows).astype(np.int64), np.concatenate(hashes).view(np.int64)


class ShingleSet:
    """A sorted set of shingle hashes to look training shingles up in (executor side).

    A byte table indexed by a hash's top bits (about 32 slots per member, so
    about 3% of absent hashes pass) answers most lookups with one gather; only
    those that pass are searched in the sorted hashes. The table is capped at
    32 MB, the size of the most hashes a task closure carries
    (``decontaminate.BROADCAST_SHINGLES``), where it has 8 slots per member and
    about 12% pass; at the most a task reads from files (``TASK_SHINGLES``, 32M)
    it has one slot per member and about 63% pass.
    """

    def __init__(self, hashes: np.ndarray) -> None:
        self.sorted = np.unique(hashes.astype(np.int64))
        self.bits = int(min(max(np.ceil(np.log2(max(len(self.sorted), 1) * 32)), 10), 25))
        self.table = np.zeros(1 << self.bits, dtype=bool)
        self.table[self._slots(self.sorted)] = True

    def _slots(self, hashes: np.ndarray) -> np.ndarray:
        return (hashes.view(np.uint64) >> np.uint64(64 - self.bits)).astype(np.intp)

    def found(self, hashes: np.ndarray) -> np.ndarray:
        """The distinct ``hashes`` (int64) that are members."""
        if not len(self.sorted):
            return np.zeros(0, dtype=np.int64)
        maybe = np.unique(hashes[self.table[self._slots(hashes)]])
        position = np.searchsorted(self.sorted, maybe).clip(max=len(self.sorted) - 1)
        return maybe[self.sorted[position] == maybe]


def shingle_hashes(text: str) -> np.ndarray:
    """The distinct shingle hashes of one text (int64, in unsigned order); empty below 13 words."""
    return shingle_rows([text])[1]
