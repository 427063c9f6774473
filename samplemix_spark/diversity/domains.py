"""``samplemix domains`` (``domain.method: clusters``): domains for a corpus that has none, from its clusters.

The stage sits after ``assign``, since the clusters exist only then, and before
``quality``, so a perplexity reference can name its domains. The k cluster
centroids are grouped by spherical k-means (faiss, on the driver: k x dim
floats) into G = min(``domain.max_domains``, k) groups, numbered from the group
with the most documents down and named ``cluster_group_<i>``. A cluster belongs
to the group whose centroid is nearest its own (float64 cosine, ties to the
lower group) and a document to its cluster's group.

A group holding less than ``domain.min_group_share`` of the documents is
dissolved into the others (smallest first), so no domain is too small to
estimate or to weigh.

The group centroids are the map. They are fitted when no document has a label
yet, which is the case after every full ingest (``samplemix run``, ``--force``,
``--resplit``), and stored in ``domain_groups``. A fit that finds stored groups
of the same dimension keeps their names: new groups are matched to stored ones
by the assignment that maximises the summed cosine of their centroids
(Hungarian), so a perplexity reference, manual weights or BiMix observations
that name a group still name the same region of the corpus after a full rerun;
a group with no stored match gets a name never used before, and the log lists
the matches, new names and retired ones. Otherwise, on a refresh, also one that
re-clusters, the groups are read back: new clusters map onto the stored groups,
and a training or held-out document that has a label keeps it. A refresh labels
only new documents and never renames one.

Writes ``documents`` with ``domain`` filled in: one rewrite, after which the
labels are a column like a source's for every later stage, report, baseline
and evaluation; a refresh on Delta sets the new rows' labels with a MERGE, which
rewrites only the files its ingest appended. Writes ``holdout`` the same way:
held-out texts are embedded and assigned to the stored centroids on executors,
as documents were (their vectors are not kept). Writes ``domain_groups`` (group_id, domain, centroid).
"""

from __future__ import annotations

import itertools
import logging
from typing import Optional

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import SampleMixConfig
from samplemix_spark.diversity.assign import assign_rows
from samplemix_spark.diversity.cluster import centroids_frame, read_centroids
from samplemix_spark.diversity.embed import embed_rows, encoder_settings
from samplemix_spark.diversity.stats import cluster_sizes
from samplemix_spark.engine.progress import Progress
from samplemix_spark.errors import ConfigError, InputError
from samplemix_spark.models.kmeans import train_kmeans
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)

GROUP_PREFIX = "cluster_group_"


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = vectors.astype(np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def nearest_group(centroids: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each cluster centroid's group: the highest float64 cosine, the lower group among equals."""
    return (_unit(centroids) @ _unit(groups).T).argmax(axis=1)  # argmax keeps the first of equal maxima


def fit_groups(centroids: np.ndarray, sizes: np.ndarray, max_domains: int, niter: int, seed: int,
               min_share: float = 0.0) -> np.ndarray:
    """(G, dim) group centroids over the cluster centroids, the group with the most documents first.

    ``sizes`` are the clusters' document counts; groups of equal size keep faiss's order. Groups under
    ``min_share`` of the documents are dropped one at a time, smallest first, their clusters going to
    the nearest remaining group.
    """
    n_groups = min(max_domains, len(centroids))
    groups = train_kmeans(centroids, n_groups, niter, seed)
    members = np.bincount(nearest_group(centroids, groups), weights=sizes, minlength=len(groups))
    while len(groups) > 1 and members.min() < min_share * sizes.sum():
        groups = np.delete(groups, int(np.argmin(members)), axis=0)
        members = np.bincount(nearest_group(centroids, groups), weights=sizes, minlength=len(groups))
    return groups[np.lexsort((np.arange(len(groups)), -members))]


def group_names(n_groups: int) -> list[str]:
    return [f"{GROUP_PREFIX}{i}" for i in range(n_groups)]


def stable_names(groups: np.ndarray, stored: np.ndarray, stored_names: list[str]) -> tuple[list[str], list[str]]:
    """Names for freshly fitted ``groups``: each matched stored group's name (the matching of largest summed
    cosine), a never-used ``cluster_group_<i>`` for the rest; and the log lines that say so."""
    from scipy.optimize import linear_sum_assignment

    cosine = _unit(groups) @ _unit(stored).T
    rows, cols = linear_sum_assignment(-cosine)
    names: list = [None] * len(groups)
    for row, col in zip(rows, cols):
        names[row] = stored_names[col]
    used = [int(n[len(GROUP_PREFIX):]) for n in stored_names if n[len(GROUP_PREFIX):].isdigit()]
    fresh = (f"{GROUP_PREFIX}{i}" for i in itertools.count(max(used, default=-1) + 1))
    names = [n if n is not None else next(fresh) for n in names]
    lines = [f"group {r} by size keeps the name {names[r]} (centroid cosine {cosine[r, c]:.3f})"
             for r, c in zip(rows, cols)]
    lines += [f"new group {n}" for n in names if n not in stored_names]
    lines += [f"{n} retired: no group matches it" for n in stored_names if n not in names]
    return names, lines


def unlabelled(rows: DataFrame) -> DataFrame:
    """The rows still without a domain: all after a full ingest, the new ones after a refresh's."""
    return rows.filter(F.col("domain").isNull())


def fill_domain(rows: DataFrame, labels: DataFrame) -> DataFrame:
    """``rows`` with a null ``domain`` taken from ``labels`` (doc_id, _label); a label already there stays."""
    return (rows.join(labels, "doc_id", "left")
            .withColumn("domain", F.coalesce(F.col("domain"), F.col("_label"))).select(*rows.columns))


def label_rows(store: TableStore, table: str, labels: DataFrame, refresh: bool) -> None:
    """Give ``table``'s rows without a domain their label from ``labels`` (doc_id, _label).

    A refresh's new rows sit in the files its ingest appended, so on Delta a MERGE
    that sets the label rewrites those files alone, not the table; a first
    labelling (every row) or a Parquet warehouse rewrites the table.
    """
    rows = store.read(table)
    if refresh and store.appends_atomically:
        pending = labels.join(unlabelled(rows).select("doc_id"), "doc_id", "left_semi")
        store.update(pending, table, "doc_id", {"domain": "_label"})
    else:
        store.write(fill_domain(rows, labels), table)


def stored_groups(store: TableStore) -> Optional[tuple[np.ndarray, list[str]]]:
    """The stored group centroids and their names, by group_id; None before the first fit."""
    if not store.exists("domain_groups"):
        return None
    frame = store.read("domain_groups").select("group_id", "domain", "centroid").toPandas().sort_values("group_id")
    return np.stack(frame["centroid"].to_numpy()).astype(np.float32), frame["domain"].tolist()


class DomainGroupsStep:
    """Label documents and held-out documents with their cluster's group; write ``domain_groups``."""

    name = "domains"

    def __init__(self, cfg: SampleMixConfig) -> None:
        self.cfg = cfg

    def check(self) -> None:
        if self.cfg.domain.method != "clusters":
            raise ConfigError(f"'domain.method': the domains stage labels documents for 'clusters', and this "
                              f"config's method is {self.cfg.domain.method!r}")

    def run(self, spark: SparkSession, store: TableStore) -> dict[str, int]:
        centroids = read_centroids(store)
        documents = store.read("documents")
        groups, group_labels, refresh = self._groups(spark, store, centroids, documents)
        names = np.array(group_labels)[nearest_group(centroids, groups)]
        mapping = spark.createDataFrame(pd.DataFrame({"cluster_id": list(range(len(centroids))),
                                                      "_label": names.tolist()}), "cluster_id int, _label string")
        labels = store.read("assignments").join(mapping, "cluster_id").select("doc_id", "_label")
        label_rows(store, "documents", labels, refresh)
        missing = F.sum(F.col("domain").isNull().cast("long")).alias("missing")
        written = store.read("documents").agg(F.count(F.lit(1)).alias("rows"), missing).collect()[0]
        if written["missing"]:
            raise InputError(f"{written['missing']} documents have no cluster assignment, so no domain: run "
                             "`samplemix embed`, `cluster` and `assign` (or `samplemix run`) before "
                             "`samplemix domains`")
        return {"documents": written["rows"], "holdout": self._label_holdout(store, centroids, mapping),
                "domain_groups": len(groups)}

    def _groups(self, spark: SparkSession, store: TableStore, centroids: np.ndarray,
                documents: DataFrame) -> tuple[np.ndarray, list[str], bool]:
        """The stored map when documents have labels already (a refresh), else a new fit, stored; with names,
        and whether the map was stored (a refresh)."""
        stored = stored_groups(store)
        if stored is not None and documents.filter(F.col("domain").isNotNull()).limit(1).count():
            if stored[0].shape[1] != centroids.shape[1]:
                raise InputError(f"the stored domain groups have dimension {stored[0].shape[1]} and the "
                                 f"centroids {centroids.shape[1]}: the encoder changed; `samplemix run --force` "
                                 "labels every document again")
            log.info("domains: %d stored groups; labelling the documents without a domain", len(stored[0]))
            return *stored, True
        diversity, domain = self.cfg.diversity, self.cfg.domain
        sizes = cluster_sizes(store.read("assignments")).set_index("cluster_id")["size"]
        sizes = sizes.reindex(range(len(centroids)), fill_value=0).to_numpy(dtype=np.float64)
        groups = fit_groups(centroids, sizes, domain.max_domains, diversity.niter, diversity.seed,
                            domain.min_group_share)
        log.info("domains: %d clusters grouped into %d domains (domain.max_domains %d, min_group_share %g)",
                 len(centroids), len(groups), domain.max_domains, domain.min_group_share)
        names = group_names(len(groups))
        if stored is not None and stored[0].shape[1] == groups.shape[1]:
            names, lines = stable_names(groups, *stored)
            log.info("domains: the stored group names are kept:\n  %s", "\n  ".join(lines))
        frame = centroids_frame(spark, groups).withColumnRenamed("cluster_id", "group_id")
        labels = spark.createDataFrame(pd.DataFrame({"group_id": range(len(names)), "domain": names}),
                                       "group_id int, domain string")
        store.write(frame.join(labels, "group_id").select("group_id", "domain", "centroid"), "domain_groups")
        return groups, names, False

    def _label_holdout(self, store: TableStore, centroids: np.ndarray, mapping: DataFrame) -> int:
        """Embed and assign the held-out documents without a label; returns the held-out count."""
        holdout = store.read("holdout")
        pending = unlabelled(holdout)
        if pending.limit(1).count():
            progress = Progress("domains: embedding held-out documents", total=0)
            vectors = embed_rows(pending, encoder_settings(self.cfg), progress)
            labels = assign_rows(vectors, centroids).join(mapping, "cluster_id").select("doc_id", "_label")
            label_rows(store, "holdout", labels, refresh=holdout.filter(F.col("domain").isNotNull()).limit(1).count())
        return store.read("holdout").count()
