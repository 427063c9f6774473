"""``samplemix run --incremental``: a scheduled refresh when new documents land in the sources.

Driver-side orchestration of the same steps ``samplemix run`` uses:

1. ingest reads only the source files that are new or changed since the last
   ingest (``ingest.source_files``), appends their new documents and lists them
   in the ``increment`` table;
2. the per-document stages (quality, embed, assign; the ``column`` score
   methods) compute rows for those documents alone and append them to their
   tables (on Delta; a re-split or Parquet rewrites them, keeping every stored row);
3. cluster runs again only with ``--recluster`` or when new documents are more
   than ``diversity.recluster_share`` of the corpus; then assign runs for every
   document against the new centroids;
4. with ``domain.method: clusters`` the domains stage labels new training and
   held-out documents through the stored groups and renames no stored one
   (it runs even when the only new documents are held out);
5. cluster statistics, diversity, weights, counts and the report are
   recomputed over the whole corpus, since adding documents changes the
   cluster sizes, the normalisation bounds and the softmax normaliser;
   on Delta, ``output`` then gets one MERGE that adds and removes only the
   copies whose count changed (``mixing.output.output_changes``).

Before any of that, a refresh whose quality or embed settings (model, encoder,
method; ``ROW_SETTINGS``) differ from those the stored rows were computed with
stops with one line naming the setting: new rows under one model beside old
rows under another would mix in one table unseen.

Given the same centroids the tables equal those of a full run over the union
of old and new sources, except that domains from clusters keep the first
fit's groups, where a full run would fit them again. The increment is cleared
only after the report, so a refresh killed midway picks the same documents up on its next run; the stage
fingerprints are then recorded, so a plain ``samplemix run`` finds every stage
up to date.
"""

from __future__ import annotations

import logging
from typing import Optional

from pyspark.sql import SparkSession

from samplemix_spark.config import SampleMixConfig
from samplemix_spark.diversity.domains import unlabelled
from samplemix_spark.errors import InputError
from samplemix_spark.pipeline import (
    STAGE_OUTPUT,
    StageResult,
    Step,
    chained_inputs,
    execute,
    plan,
    run_step,
    with_hash_scheme,
)
from samplemix_spark.tables import TableStore
from samplemix_spark.tables.per_document import PerDocumentStep, run_per_document
from samplemix_spark.tables.state import StageState, changed_keys, stage_inputs

log = logging.getLogger(__name__)


def recluster_needed(n_new: int, n_docs: int, cfg: SampleMixConfig, requested: bool) -> bool:
    """Whether the refresh fits new centroids (logged with the reason)."""
    share = n_new / n_docs if n_docs else 1.0
    if requested or share > cfg.diversity.recluster_share:
        log.info("refresh: re-clustering (%s)", "requested" if requested else
                 f"new documents are {share:.1%} of the corpus, above diversity.recluster_share "
                 f"{cfg.diversity.recluster_share:.0%}")
        return True
    log.info("refresh: new documents are %.1f%% of the corpus: assigning them to the stored centroids", 100 * share)
    return False


# Per stage, the settings its stored rows depend on (None: every one but RUNTIME_ONLY). A refresh under other
# values would score new documents one way and keep stored rows scored another, in one table.
ROW_SETTINGS = {"quality": None,
                "embed": ("method", "encoder", "pooling", "max_tokens", "precision", "storage", "static")}
RUNTIME_ONLY = ("batch_size", "device")
SECTIONS = {"quality": "quality", "embed": "diversity"}


def row_settings(stage: str, config: dict) -> dict:
    keys = ROW_SETTINGS[stage]
    return {k: v for k, v in config.items() if (k in keys if keys else k not in RUNTIME_ONLY)}


def check_row_settings(state: StageState, cfg: SampleMixConfig, stages: list[str],
                       spark: Optional[SparkSession] = None) -> None:
    """Refuse a refresh whose per-document stages would score new documents under other settings (a model,
    an encoder, a method) than the stored rows were; one line names the setting and the way out."""
    for stage in (s for s in stages if s in ROW_SETTINGS):
        before = state.recorded_inputs(stage)
        if before is None:  # a record from before inputs were kept
            continue
        # Only the stage's own settings are compared, so no upstream fingerprint (and no source digest) is needed.
        current = stage_inputs(stage, cfg, None, spark)
        old, new = (row_settings(stage, x.get("config") or {}) for x in (before, current))
        if old != new:
            changed = ", ".join(f"{SECTIONS[stage]}.{c}" for c in changed_keys(old, new)[:3])
            raise InputError(f"refresh: {changed} changed since the stored {STAGE_OUTPUT[stage]} rows were "
                             "written, so new documents would be scored under the new setting beside rows scored "
                             "under the old one; run `samplemix run` (without --incremental) to score every "
                             "document again, or `samplemix run --force`")


def run_incremental(spark: SparkSession, cfg: SampleMixConfig, recluster: bool = False,
                    planned: Optional[list[tuple[str, Step]]] = None, resplit: bool = False) -> list[StageResult]:
    """Refresh the tables for documents that are new in the sources (see the module docstring).

    With ``resplit`` ingest splits the sources again under the configured held-out
    settings (``samplemix run --resplit``): documents that moved into training are
    scored like new ones, those now held out leave every table.
    """
    planned = plan(cfg) if planned is None else planned
    cfg = with_hash_scheme(spark, cfg)
    store = TableStore(spark, cfg.tables)
    if not all(store.exists(STAGE_OUTPUT[stage]) for stage, _ in planned):
        log.info("refresh: no complete earlier run in %s: running every stage", cfg.tables.warehouse)
        return execute(spark, cfg, planned, resume=True)
    check_row_settings(StageState(spark, store), cfg, [stage for stage, _ in planned], spark)
    steps = dict(planned)
    ingest = steps["ingest"].run_resplit if resplit else steps["ingest"].run_increment
    results = [run_step(spark, cfg, steps["ingest"], ingest)]
    increment = store.read("increment")
    n_new, n_docs = increment.count(), store.read("documents").count()
    if n_new == 0 and not recluster and not resplit:
        if "domains" in steps and unlabelled(store.read("holdout")).limit(1).count():
            log.info("refresh: no new training documents; labelling the new held-out ones")
            results.append(run_step(spark, cfg, steps["domains"]))
        else:
            log.info("refresh: no new documents; every table is current")
    else:
        refit = "cluster" in steps and recluster_needed(n_new, n_docs, cfg, recluster)
        for stage, step in planned[1:]:
            results.extend(_refresh_stage(spark, cfg, stage, step, increment, refit, append=not resplit))
        store.write(increment.limit(0), "increment")
    _record_current(spark, store, cfg, planned, results)
    return results


def _record_current(spark: SparkSession, store: TableStore, cfg: SampleMixConfig,
                    planned: list[tuple[str, Step]], results: list[StageResult]) -> None:
    """Record every stage as current for these sources, so a plain `samplemix run` skips them."""
    seconds = {r.stage: r.seconds for r in results}
    stages = [stage for stage, _ in planned]
    StageState(spark, store).record_many({stage: (current, seconds.get(stage, 0.0))
                                          for stage, current in zip(stages, chained_inputs(cfg, stages, spark))})


def _refresh_stage(spark: SparkSession, cfg: SampleMixConfig, stage: str, step: Step, increment,
                   refit: bool, append: bool) -> list[StageResult]:
    """One stage of the refresh; ``append``: documents were only added, so per-document tables grow by the new
    rows alone (a re-split also removes documents, so it rewrites them)."""
    if stage == "cluster" and not refit:
        log.info("stage cluster: kept the stored centroids")
        return []
    if isinstance(step, PerDocumentStep) and not (stage == "assign" and refit):
        return [run_step(spark, cfg, step,
                         lambda s, store: run_per_document(s, store, step, increment, append=append))]
    if stage == "mix":  # stored copies are still right when documents were only added: MERGE the changed counts
        return [run_step(spark, cfg, step, lambda s, store: step.run(s, store, merge_output=append))]
    return [run_step(spark, cfg, step)]
