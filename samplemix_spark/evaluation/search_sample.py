"""The documents a parameter search draws its candidates on. Driver side.

``tune`` and the QuaDMix search compute every candidate's counts from the stored
scores, a row per candidate and selected document. On a corpus above
``tune.sample_docs`` documents they draw them on a hashed sample of about that
many (``hashing.TUNE_SAMPLE`` with ``tune.seed``), an absolute token budget
turned into the same share of the sample, so a search costs its candidates
times the sample, not times the corpus. A proxy trains on a fixed byte budget far
below either: what it takes from a candidate is its proportions, which the
sample keeps. A domain much smaller than the corpus over ``sample_docs`` can
lose every document to the sample; the log says how many documents the search
mixes.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from samplemix_spark.config import MixingConfig, SampleMixConfig
from samplemix_spark.hashing import TUNE_SAMPLE, uniform
from samplemix_spark.mixing.weights import stored_scores
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)

# The scored documents (or their sample) a search mixes, written once per search.
SEARCH_SCORES = "search_scores"


@dataclass(frozen=True)
class SearchInput:
    """The scored documents a search mixes, the base mixing settings for them, and whether they are a sample."""

    scored: DataFrame
    mixing: MixingConfig
    sample_docs: int = 0  # the sample's target size; 0: every document

    def fingerprint_parts(self) -> dict:
        """What stored proxies of a sampled search also depend on (nothing for a search of every document)."""
        return {"sample_docs": self.sample_docs} if self.sample_docs else {}


def search_input(store: TableStore, cfg: SampleMixConfig, scored: DataFrame) -> SearchInput:
    """``scored`` whole up to ``tune.sample_docs`` documents, above it a hashed sample (one aggregate); either is
    written once as the narrow ``search_scores`` table, which every candidate's aggregates then scan."""
    mixing = cfg.mixing
    totals = scored.agg(F.count(F.lit(1)).alias("n"), F.sum("n_tokens").cast("double").alias("t")).collect()[0]
    if totals["n"] <= cfg.tune.sample_docs:
        return SearchInput(stored_scores(store, scored, SEARCH_SCORES), mixing)
    fraction = cfg.tune.sample_docs / totals["n"]
    log.info("tune: %d documents; the search mixes a hashed sample of about %d (tune.sample_docs)", totals["n"],
             cfg.tune.sample_docs)
    sample = scored.filter(uniform(F.col("doc_id"), cfg.tune.seed, TUNE_SAMPLE, store.hash_scheme) < fraction)
    if mixing.target_tokens is not None:
        mixing = dataclasses.replace(mixing, target_tokens=None, target_fraction=mixing.target_tokens / totals["t"])
    return SearchInput(stored_scores(store, sample, SEARCH_SCORES), mixing, cfg.tune.sample_docs)
