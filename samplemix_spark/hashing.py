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
choice made for one purpose is independent of every other. ``stream_key`` orders
a proxy's training copies, and ``shingle_hashes`` gives the 13-word shingles that
decide which held-out documents are near-copies of training text.
"""

from __future__ import annotations

import hashlib
import re

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


def stream_key(seed: int, epoch: int, doc_id: str, replica: int) -> int:
    """The order of a proxy's training copies: one key per (seed, epoch, document, replica)."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{replica}:{doc_id}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


SHINGLE_WORDS = 13
# Words split on an explicit ASCII whitespace class (not str.split's Unicode-wide one), lower-cased first.
_WORD_SPLIT = re.compile("[\t\n\x0b\f\r ]+")
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def _word_hashes(words: list[str]) -> np.ndarray:
    """A 64-bit BLAKE2b hash of each word's UTF-8 bytes (each distinct word hashed once)."""
    unique, inverse = np.unique(np.array(words, dtype=object), return_inverse=True)
    digests = np.array([int.from_bytes(hashlib.blake2b(w.encode("utf-8"), digest_size=8).digest(), "big")
                        for w in unique], dtype=np.uint64)
    return digests[inverse]


def shingle_hashes(text: str) -> np.ndarray:
    """The distinct hashes of a text's lower-cased 13-word windows (int64); empty below 13 words.

    A window's hash combines its 13 word hashes as a polynomial in a fixed odd
    multiplier (arithmetic mod 2^64), so no window is ever built as a string (a
    long document's windows as text would be 13 times its size). Python computes
    it wherever it runs, so every engine cuts and hashes the same words.
    """
    words = [w for w in _WORD_SPLIT.split(text.lower()) if w]
    n = len(words) - SHINGLE_WORDS + 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    hashed = _word_hashes(words)
    acc = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(SHINGLE_WORDS):
            acc = acc * _MULTIPLIER + hashed[k:k + n]
    return np.unique(acc).view(np.int64)
