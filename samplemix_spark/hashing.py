"""Every hash that picks documents: one module, at the bottom of the package.

Spark side, ``hashed_uniform`` gives a document a uniform number in [0, 1) from
``xxhash64(doc_id, seed)``: the same on every engine, rerun and partitioning
(the held-out split, the count draw, the k-means sample, the annotation sample).

Python side (executors and the driver, no Spark), ``doc_key`` gives a document a
64-bit key for one named purpose (``HOLDOUT_ORDER``, ``HOLDOUT_WINDOW``): the
purpose is part of the hashed text, so two purposes never share a key and a
choice made for one purpose is independent of every other. ``stream_key`` orders
a proxy's training copies.
"""

from __future__ import annotations

import hashlib

from pyspark.sql import Column
from pyspark.sql import functions as F

# 2**53: uniforms built from the top 53 bits of a 64-bit hash are exact doubles in [0, 1).
_TWO_POW_53 = float(2**53)

HOLDOUT_ORDER = "holdout-order"    # which held-out documents are scored, and which at every evaluation step
HOLDOUT_WINDOW = "holdout-window"  # where a long held-out document's scored window starts


def hashed_uniform(doc_id: Column, seed: int) -> Column:
    """A uniform number in [0, 1) from xxhash64(doc_id, seed).

    The same document and seed give the same number on every engine, rerun and
    partitioning. The top 53 bits of the hash fill a double's mantissa exactly.
    """
    return F.shiftrightunsigned(F.xxhash64(doc_id, F.lit(seed)), 11).cast("double") / F.lit(_TWO_POW_53)


def doc_key(purpose: str, doc_id: str, seed: int = 0) -> int:
    """A 64-bit key of ``doc_id`` for ``purpose``: BLAKE2b, so it is the same in every process and Python."""
    digest = hashlib.blake2b(f"{purpose}:{seed}:{doc_id}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def stream_key(seed: int, epoch: int, doc_id: str, replica: int) -> int:
    """The order of a proxy's training copies: one key per (seed, epoch, document, replica)."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{replica}:{doc_id}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")
