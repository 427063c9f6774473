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

The BiMix swarm samples by domain instead (``domain_floor_input``): every domain
keeps at least an equal share of the sample. Its mixtures set each domain's token
share on its own, so a domain drawn at a higher rate still gets exactly the share
a mixture gives it; SampleMix and QuaDMix weigh documents against one another
across domains, so their searches keep one rate for every document.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
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
    sampling: dict = dataclasses.field(default_factory=dict)  # how the sample was drawn, beyond its size

    def fingerprint_parts(self) -> dict:
        """What stored proxies of a sampled search also depend on (nothing for a search of every document)."""
        return {"sample_docs": self.sample_docs, **self.sampling} if self.sample_docs else {}


def search_input(store: TableStore, cfg: SampleMixConfig, scored: DataFrame) -> SearchInput:
    """``scored`` whole up to ``tune.sample_docs`` documents, above it a hashed sample (one aggregate); either is
    written once as the narrow ``search_scores`` table, which every candidate's aggregates then scan."""
    totals = scored.agg(F.count(F.lit(1)).alias("n"), F.sum("n_tokens").cast("double").alias("t")).collect()[0]
    if totals["n"] <= cfg.tune.sample_docs:
        return SearchInput(stored_scores(store, scored, SEARCH_SCORES), cfg.mixing)
    fraction = cfg.tune.sample_docs / totals["n"]
    log.info("tune: %d documents; the search mixes a hashed sample of about %d (tune.sample_docs)", totals["n"],
             cfg.tune.sample_docs)
    return _sampled(store, cfg, scored, F.lit(fraction), totals["t"], {})


def domain_floor_input(store: TableStore, cfg: SampleMixConfig, scored: DataFrame) -> SearchInput:
    """As ``search_input``, but above ``tune.sample_docs`` each domain is drawn at its own rate: at least the
    corpus-wide rate, and enough to keep ``sample_docs / domains`` of its documents (all of a smaller domain).

    For mixtures of domain proportions (the BiMix swarm; see the module doc). The
    sample then holds at most twice ``sample_docs`` documents, and a domain of
    0.1% of the corpus keeps enough documents to fill the share a mixture gives
    it without repeating a few of them hundreds of times.
    """
    rows = scored.groupBy("domain").agg(F.count(F.lit(1)).alias("n"),
                                        F.sum("n_tokens").cast("double").alias("t")).collect()
    n, target = sum(r["n"] for r in rows), cfg.tune.sample_docs
    if n <= target:
        return SearchInput(stored_scores(store, scored, SEARCH_SCORES), cfg.mixing)
    floor = target / len(rows)
    rates = {r["domain"]: min(1.0, max(target / n, floor / r["n"])) for r in rows}
    log.info("swarm: %d documents; the mixtures are drawn on a hashed sample of about %d (tune.sample_docs), "
             "each domain keeping at least %d documents or all of its own", n,
             round(sum(rates[r["domain"]] * r["n"] for r in rows)), floor)
    rate = F.create_map(*(F.lit(x) for domain, r in sorted(rates.items()) for x in (domain, r)))[F.col("domain")]
    return _sampled(store, cfg, scored, rate, sum(r["t"] for r in rows), {"sample_floor": "per domain"})


def _sampled(store: TableStore, cfg: SampleMixConfig, scored: DataFrame, rate: Column, tokens: float,
             parts: dict) -> SearchInput:
    """The documents whose hashed uniform falls under ``rate``, stored; an absolute token budget becomes the
    same share of the sample as of the corpus's ``tokens``."""
    mixing = cfg.mixing
    sample = scored.filter(uniform(F.col("doc_id"), cfg.tune.seed, TUNE_SAMPLE, store.hash_scheme) < rate)
    if mixing.target_tokens is not None:
        mixing = dataclasses.replace(mixing, target_tokens=None, target_fraction=mixing.target_tokens / tokens)
    return SearchInput(stored_scores(store, sample, SEARCH_SCORES), mixing, cfg.tune.sample_docs, parts)
