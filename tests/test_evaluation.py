"""Proxy evaluation: the held-out split, the training stream, the proxy and ``samplemix evaluate``.

Answers known in advance: a trained proxy beats a byte-unigram model on every
held-out domain; a mixture without code models held-out code worse; the same
seed gives the same losses; no held-out document reaches a mix.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from samplemix_spark.config import build_config
from samplemix_spark.errors import ConfigError, InputError
from samplemix_spark.evaluation import holdout as held
from samplemix_spark.evaluation import intervals
from samplemix_spark.evaluation.evaluate import Evaluation, evaluate, summarise
from samplemix_spark.evaluation.proxy import PRESETS, unigram_bits_per_byte
from samplemix_spark.evaluation.stream import Copies, read_stream, training_stream
from samplemix_spark.evaluation.swarm import ProxyJob, output_bytes, run_job, staged
from samplemix_spark.ingest.holdout import _key_limit
from samplemix_spark.pipeline import run_stage
from samplemix_spark.tables.files import snapshot_files

from . import evaluation_corpus
from .conftest import make_config, store_for
from .test_cli import samplemix

HOLDOUT = {"holdout_fraction": 0.15, "holdout_seed": 7}
FRESH = ("Tidal mills ground grain on the estuary for six centuries, their wheels turned by water trapped at high "
         "tide and released through a sluice as the sea fell back.")


def _corpus_config(root, **sections):
    source = evaluation_corpus.write(root / "src" / "corpus.jsonl")
    ingest = {**HOLDOUT, **sections.pop("ingest", {})}
    return make_config(root / "wh", [source], ingest=ingest, **sections)


def _mix(spark, cfg, warehouse, **mixing):
    """Mix ``cfg``'s scored documents with other settings into ``warehouse``; returns its config."""
    variant = dataclasses.replace(cfg, tables=dataclasses.replace(cfg.tables, warehouse=str(warehouse)),
                                  mixing=build_config({"mixing": mixing}).mixing)
    from samplemix_spark.mixing import MixStep

    MixStep(variant).run(spark, store_for(spark, variant), inputs=store_for(spark, cfg))
    return variant


@pytest.fixture(scope="module")
def corpus(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation")
    cfg = _corpus_config(root)
    for stage in ("ingest", "quality", "diversity", "mix", "report"):
        run_stage(spark, cfg, stage)
    return root, cfg


def _doc_ids(store, table: str) -> set:
    return set(store.read(table).select("doc_id").toPandas()["doc_id"])


def test_holdout_is_a_hashed_share_of_every_domain_and_rows_are_conserved(spark, corpus):
    _, cfg = corpus
    store = store_for(spark, cfg)
    holdout = store.read("holdout").toPandas()
    documents = store.read("documents").toPandas()
    n_input = len(evaluation_corpus.records())
    assert len(documents) + store.read("rejects").count() + len(holdout) == n_input
    assert set(holdout["domain"]) == {"business", "sports", "tech", "code"}
    assert 0.08 < len(holdout) / n_input < 0.22
    assert not set(holdout["doc_id"]) & set(documents["doc_id"])
    # The split is a function of doc_id and holdout_seed alone: xxhash64(doc_id, seed) -> [0, 1) < fraction.
    from .oracle import HOLDOUT_SPLIT, spark_xxhash64_uniform

    chosen = {d for d in set(holdout["doc_id"]) | set(documents["doc_id"])
              if spark_xxhash64_uniform(d, HOLDOUT["holdout_seed"], HOLDOUT_SPLIT) < HOLDOUT["holdout_fraction"]}
    assert chosen == set(holdout["doc_id"])


def test_no_held_out_document_reaches_any_mix(spark, corpus, tmp_path):
    root, cfg = corpus
    held_ids = _doc_ids(store_for(spark, cfg), "holdout")
    variants = [dict(budget_mode="documents"), dict(budget_mode="tokens", target_fraction=2.0),
                dict(method="domain"), dict(method="domain", domain_weights={"source": "entropy"}),
                dict(method="domain", domain_weights={"source": "quality_threshold", "quality_cut": 3})]
    for i, mixing in enumerate(variants):
        store = store_for(spark, _mix(spark, cfg, tmp_path / f"v{i}", **mixing))
        assert not held_ids & (_doc_ids(store, "weights") | _doc_ids(store, "output")), mixing


def test_an_incremental_refresh_keeps_new_held_out_documents_out_of_the_mix(spark, tmp_path):
    from samplemix_spark.refresh import run_incremental

    cfg = _corpus_config(tmp_path)
    for stage in ("ingest", "quality", "diversity", "mix"):
        run_stage(spark, cfg, stage)
    extra = evaluation_corpus.records(120)
    landed = [r for r in extra if r not in evaluation_corpus.records()]
    (tmp_path / "src" / "new.jsonl").write_text("".join(json.dumps(r) + "\n" for r in landed))
    run_incremental(spark, cfg)
    store = store_for(spark, cfg)
    held_ids = _doc_ids(store, "holdout")
    assert len(held_ids) > len(evaluation_corpus.records()) * 0.08
    assert not held_ids & (_doc_ids(store, "documents") | _doc_ids(store, "weights") | _doc_ids(store, "output"))


def _held_out_by_threshold(doc_ids, domains: pd.Series, thresholds: dict) -> set:
    from .oracle import HOLDOUT_SPLIT, spark_xxhash64_uniform

    return {d for d, domain in zip(doc_ids, domains)
            if spark_xxhash64_uniform(d, HOLDOUT["holdout_seed"], HOLDOUT_SPLIT) < thresholds[domain]}


def test_holdout_docs_holds_out_about_that_many_per_domain_and_a_refresh_keeps_each_domains_threshold(spark,
                                                                                                      tmp_path):
    from samplemix_spark.refresh import run_incremental

    per_domain = 12
    source = evaluation_corpus.write(tmp_path / "src" / "corpus.jsonl", 60)
    cfg = make_config(tmp_path / "wh", [source], ingest={"holdout_docs": per_domain, "holdout_seed": 7})
    for stage in ("ingest", "quality", "diversity", "mix"):
        run_stage(spark, cfg, stage)
    store = store_for(spark, cfg)
    rows = pd.concat([store.read(t).select("doc_id", "domain").toPandas() for t in ("documents", "holdout")])
    rejected = store.read("rejects").toPandas()
    # The threshold is per_domain over the domain's valid rows (kept ones plus held-out leak rejects).
    valid = pd.concat([rows, rejected[rejected["reason"].str.startswith("holdout_")][["doc_id", "domain"]]])
    counts = valid.groupby("domain")["doc_id"].nunique()
    stored = store.read("holdout_thresholds").toPandas().set_index("domain")
    np.testing.assert_allclose(stored["threshold"], np.minimum(1.0, per_domain / counts[stored.index]))
    first = store.read("holdout").toPandas()
    assert set(first["doc_id"]) == _held_out_by_threshold(rows["doc_id"], rows["domain"], stored["threshold"])
    sizes = first.groupby("domain").size()
    assert set(sizes.index) == set(counts.index) and ((sizes > per_domain / 3) & (sizes < per_domain * 3)).all()

    # Twice the documents land: each domain keeps the threshold it was split with, so nothing stored moves.
    extra = [r for r in evaluation_corpus.records(120) if r not in evaluation_corpus.records(60)]
    (tmp_path / "src" / "new.jsonl").write_text("".join(json.dumps(r) + "\n" for r in extra))
    before = _doc_ids(store, "documents")
    run_incremental(spark, cfg)
    after = store.read("holdout_thresholds").toPandas().set_index("domain")["threshold"]
    assert after.to_dict() == stored["threshold"].to_dict()
    held = store.read("holdout").toPandas()
    assert set(first["doc_id"]) <= set(held["doc_id"]) and before <= _doc_ids(store, "documents")
    new_rows = store.read("documents").select("doc_id", "domain").toPandas()
    new_rows = pd.concat([new_rows[~new_rows["doc_id"].isin(before)], held[~held["doc_id"].isin(first["doc_id"])]])
    assert set(held["doc_id"]) - set(first["doc_id"]) == _held_out_by_threshold(new_rows["doc_id"],
                                                                                  new_rows["domain"], after)


def test_a_refresh_refuses_a_changed_split_and_a_resplit_keeps_the_split_clean(spark, tmp_path, caplog):
    from samplemix_spark.refresh import run_incremental

    cfg = _corpus_config(tmp_path)
    for stage in ("ingest", "quality", "diversity", "mix", "report"):
        run_stage(spark, cfg, stage)
    store = store_for(spark, cfg)
    before = _doc_ids(store, "documents")
    changed = dataclasses.replace(cfg, ingest=dataclasses.replace(cfg.ingest, holdout_seed=8))
    with pytest.raises(InputError, match=r"ingest.holdout_seed 7 -> 8.*samplemix run --resplit"):
        run_incremental(spark, changed)
    other_scheme = dataclasses.replace(cfg, tables=dataclasses.replace(cfg.tables, hash_scheme="v1"))
    with pytest.raises(InputError, match=r"tables.hash_scheme v2 -> v1"):
        run_incremental(spark, other_scheme)
    assert _doc_ids(store, "documents") == before  # refused before anything was written

    caplog.set_level(logging.INFO)
    run_incremental(spark, changed, resplit=True)
    held_ids, docs = _doc_ids(store, "holdout"), _doc_ids(store, "documents")
    for table in ("documents", "quality", "diversity", "weights", "output"):
        assert not held_ids & _doc_ids(store, table), table
    # The same split as a full ingest under the new seed, and only documents new to training were scored.
    fresh = dataclasses.replace(changed, tables=dataclasses.replace(changed.tables, warehouse=str(tmp_path / "f")))
    run_stage(spark, fresh, "ingest")
    assert docs == _doc_ids(store_for(spark, fresh), "documents")
    assert held_ids == _doc_ids(store_for(spark, fresh), "holdout")
    assert f"{len(docs - before)} documents to score" in caplog.text and docs - before
    assert _doc_ids(store, "quality") == docs
    # The new split is the recorded one: a plain refresh now goes through.
    run_incremental(spark, changed)


def test_a_refresh_never_holds_out_a_stored_training_document(spark, tmp_path):
    from samplemix_spark.refresh import run_incremental

    records = evaluation_corpus.records(20)
    train = tmp_path / "src" / "train.jsonl"
    given = tmp_path / "eval" / "eval.jsonl"
    given.parent.mkdir(parents=True)
    evaluation_corpus.write(train, 20)
    given.write_text(json.dumps({"text": FRESH, "domain": "tech", "quality_score": 5.0, "diversity_score": 0.5}) + "\n")
    cfg = make_config(tmp_path / "wh", [train], ingest={"holdout_sources": [str(given)]})
    for stage in ("ingest", "quality", "diversity", "mix", "report"):
        run_stage(spark, cfg, stage)
    # A training document leaves the training file and lands in the held-out file: the stored copy stays.
    moved = records[5]
    train.write_text("".join(json.dumps(r) + "\n" for r in records if r is not moved))
    given.write_text(given.read_text() + json.dumps(moved) + "\n")
    run_incremental(spark, cfg)
    store = store_for(spark, cfg)
    assert not _doc_ids(store, "holdout") & _doc_ids(store, "documents")
    assert store.read("holdout").count() == 1
    assert store.read("rejects").toPandas()["reason"].tolist().count("holdout_duplicate") == 1


def test_a_held_out_text_that_is_also_a_training_text_is_rejected(spark, tmp_path):
    records = evaluation_corpus.records(20)
    train = evaluation_corpus.write(tmp_path / "src" / "train.jsonl", 20)
    given = tmp_path / "eval" / "eval.jsonl"
    given.parent.mkdir()
    copied = records[3]
    near = {**copied, "text": copied["text"] + " Held-out edition."}
    fresh = {"text": FRESH, "domain": "tech", "quality_score": 5.0, "diversity_score": 0.5}
    given.write_text("".join(json.dumps(r) + "\n" for r in (copied, near, fresh)))
    cfg = make_config(tmp_path / "wh", [train], ingest={"holdout_sources": [str(given)]})
    rows = run_stage(spark, cfg, "ingest").rows
    store = store_for(spark, cfg)
    reasons = store.read("rejects").toPandas()["reason"].tolist()
    assert rows["holdout"] == 1 and rows["documents"] + len(reasons) + 1 == len(records) + 3
    assert store.read("holdout").toPandas()["text"].tolist() == [fresh["text"]]
    # The exact copy, and the copy with a sentence added (nearly all of its 13-word shingles are training text).
    assert reasons.count("holdout_duplicate") == 1 and reasons.count("holdout_near_duplicate") == 1
    overlap = store.read("holdout_overlap").toPandas().set_index("doc_id")["share"]
    assert overlap.max() > 0.9 and overlap.min() == 0.0


def test_the_near_copy_check_covers_the_held_out_documents_evaluate_can_score(spark, tmp_path):
    """With evaluate.max_eval_docs 4 the check covers the first 8 held-out documents in the scored order; the
    others stay held out unchecked, and only checked ones are scored."""
    records = evaluation_corpus.records(20)
    train = evaluation_corpus.write(tmp_path / "src" / "train.jsonl", 20)
    given = tmp_path / "eval" / "eval.jsonl"
    given.parent.mkdir()
    held_out = [{**records[i], "domain": "tech", "text": records[i]["text"] + " Held-out edition."} if i % 2 else
                {"text": f"A fresh held-out report, number {i}, on matters no training document covers at all, "
                         f"told in its own words {i} times over.", "domain": "tech", "quality_score": 5.0,
                 "diversity_score": 0.5} for i in range(24)]
    given.write_text("".join(json.dumps(r) + "\n" for r in held_out))
    cfg = make_config(tmp_path / "wh", [train], ingest={"holdout_sources": [str(given)]},
                      evaluate={"max_eval_docs": 4})
    run_stage(spark, cfg, "ingest")
    store = store_for(spark, cfg)
    holdout = store.read("holdout").toPandas()
    near = store.read("rejects").where("reason = 'holdout_near_duplicate'").toPandas()
    every = pd.concat([holdout[["doc_id", "text"]], near[["doc_id", "text"]]])
    assert len(every) == 24
    ordered = sorted(every["doc_id"], key=lambda d: (held.doc_key(held.HOLDOUT_ORDER, d), d))
    checked = set(ordered[:8])
    copies = set(every.loc[every["text"].str.endswith("Held-out edition."), "doc_id"])
    assert set(store.read("holdout_overlap").toPandas()["doc_id"]) == checked
    assert set(near["doc_id"]) == copies & checked and copies - checked
    assert set(holdout["doc_id"]) == set(every["doc_id"]) - (copies & checked)
    clean = [d for d in ordered if d in checked - copies]
    held.spec(store, 4096, 4, 2)
    assert sorted(store.read("holdout_scored").toPandas()["doc_id"]) == sorted(clean[:4])


def test_holdout_settings_are_validated():
    with pytest.raises(ConfigError, match="ingest.holdout_fraction"):
        build_config({"ingest": {"holdout_fraction": 1.0}})
    with pytest.raises(ConfigError, match="set one of .*not ingest.holdout_fraction and ingest.holdout_sources"):
        build_config({"ingest": {"holdout_fraction": 0.1, "holdout_sources": ["x.jsonl"]}})
    with pytest.raises(ConfigError, match="not ingest.holdout_fraction and ingest.holdout_docs"):
        build_config({"ingest": {"holdout_fraction": 0.1, "holdout_docs": 100}})
    for bad in (-1, 2.5, True):
        with pytest.raises(ConfigError, match="ingest.holdout_docs"):
            build_config({"ingest": {"holdout_docs": bad}})
    with pytest.raises(ConfigError, match="evaluate.preset"):
        build_config({"evaluate": {"preset": "huge"}})
    with pytest.raises(ConfigError, match="evaluate.seeds"):
        build_config({"evaluate": {"seeds": [1, 1]}})


def test_the_stream_reads_the_current_snapshot_in_an_order_the_layout_cannot_change(spark, corpus, tmp_path):
    _, cfg = corpus
    shuffled = store_for(spark, _mix(spark, cfg, tmp_path / "a", shuffle=True, output_file_mb=0.05))
    plain = store_for(spark, _mix(spark, cfg, tmp_path / "b", shuffle=False))
    files_a, files_b = snapshot_files(shuffled), snapshot_files(plain)
    assert len(files_a) > 1 == len(files_b)
    streams = _staging(spark, tmp_path)
    a, b = (training_stream(streams, Copies(tuple(files)), 50_000, seed=3) for files in (files_a, files_b))
    assert len(a.data) == 50_001 and np.array_equal(a.data, b.data)
    assert not np.array_equal(a.data, training_stream(streams, Copies(tuple(files_a)), 50_000, 4).data)
    # A rewrite leaves the old version's files in the Delta folder; the stream must not read them.
    _mix(spark, cfg, tmp_path / "a", shuffle=True, output_file_mb=0.05, seed=99)
    current = snapshot_files(shuffled)
    on_disk = list((tmp_path / "a" / "output").glob("*.parquet"))
    assert set(current) == set(DeltaTable(str(tmp_path / "a" / "output")).file_uris()) and len(on_disk) > len(current)


def test_the_stream_cycles_through_a_small_output_and_counts_epochs(spark, corpus, tmp_path):
    _, cfg = corpus
    files, streams = Copies(tuple(snapshot_files(store_for(spark, cfg)))), _staging(spark, tmp_path)
    total = sum(len(t.encode()) + len(held.SEPARATOR)
                for t in store_for(spark, cfg).read("output").toPandas()["text"])
    assert output_bytes(store_for(spark, cfg)) == total  # what the driver hands each proxy
    stream = training_stream(streams, files, int(total * 2.5), seed=0)
    assert stream.epochs == pytest.approx(2.5, rel=1e-6)
    first = training_stream(streams, files, total - 1, seed=0).data
    assert np.array_equal(stream.data[:total], first)
    assert not np.array_equal(stream.data[total:2 * total], first)  # the next epoch has its own order


def _spec(spark, cfg, doc_bytes: int = 4096, max_docs: int = 2000, step_docs: int = 256) -> held.HeldOutSpec:
    return held.spec(store_for(spark, cfg), doc_bytes, max_docs, step_docs)


def _staging(spark, root: Path):
    """A warehouse of its own for staged proxy streams (``proxy_copies``)."""
    from samplemix_spark.config import TablesConfig
    from samplemix_spark.tables import TableStore

    return TableStore(spark, TablesConfig(warehouse=str(root / "streams")))


def _job(cfg, spark, seed: int, store=None, spec=None, budget_bytes: int = PRESETS["test"].budget_bytes) -> ProxyJob:
    """One proxy of the corpus' output, its stream staged."""
    import tempfile

    files = tuple(snapshot_files(store or store_for(spark, cfg)))
    job = ProxyJob(0, "run", files, seed, "test", budget_bytes, threads=2, device="cpu",
                   held_out=spec or _spec(spark, cfg))
    return staged(_staging(spark, Path(tempfile.mkdtemp())), [job])[0]


def _final_bpb(scores: pd.DataFrame) -> pd.Series:
    last = scores[scores["step"] == scores["step"].max()].groupby("domain")[["bits", "bytes"]].sum()
    return last["bits"] / last["bytes"]


def test_every_held_out_document_is_scored_on_its_own_bytes(spark, corpus):
    _, cfg = corpus
    holdout = store_for(spark, cfg).read("holdout").toPandas()
    spec = _spec(spark, cfg, doc_bytes=700, max_docs=9, step_docs=4)
    docs = held.load(spec)
    per_domain = holdout.groupby("domain")["doc_id"].apply(set)
    for domain, chosen in docs.items():
        # The first max_docs documents of the domain in hashed order; the step subset is their head.
        assert len(chosen.doc_ids) == min(9, len(per_domain[domain])) and set(chosen.doc_ids) <= per_domain[domain]
        keys = [held.doc_key(held.HOLDOUT_ORDER, d) for d in per_domain[domain]]
        assert [held.doc_key(held.HOLDOUT_ORDER, d) for d in chosen.doc_ids] == sorted(keys)[:len(chosen.doc_ids)]
        assert chosen.n_step == min(4, len(chosen.doc_ids))
        texts = holdout.set_index("doc_id").loc[list(chosen.doc_ids), "text"]
        for text, window in zip(texts, chosen.texts):
            data = text.encode("utf-8")
            assert window == data if len(data) <= 700 else (len(window) == 700 and window in data)
    # Proxies read only those documents, written once to holdout_scored.
    scored = store_for(spark, cfg).read("holdout_scored").toPandas()
    assert sorted(scored["doc_id"]) == sorted(d for c in docs.values() for d in c.doc_ids)
    scores = run_job(_job(cfg, spark, 0, spec=spec))
    final = scores[scores["step"] == scores["step"].max()]
    steps = sorted(set(scores["step"]))
    assert len(steps) == PRESETS["test"].evaluations
    # Final step: every chosen document once, with its byte count; earlier steps: only the step subset.
    assert sorted(final["doc_id"]) == sorted(d for c in docs.values() for d in c.doc_ids)
    sizes = {d: len(t) for c in docs.values() for d, t in zip(c.doc_ids, c.texts)}
    assert all(final["bytes"] == final["doc_id"].map(sizes)) and (final["bits"] > 0).all()
    early = scores[scores["step"] == steps[0]]
    assert sorted(early["doc_id"]) == sorted(d for c in docs.values() for d in c.doc_ids[:c.n_step])
    assert early["subset"].all() and final["subset"].sum() == len(early)


def test_scored_candidates_are_each_domains_first_documents_in_hashed_order(spark):
    # 400 documents in "big" (where only the keys below a share are ranked), 30 in "mid", 2 in "tiny";
    # every seventh text is empty or null and cannot be scored.
    sizes = {"big": 400, "mid": 30, "tiny": 2}
    rows = [(f"{domain}-{i}", domain, None if i % 14 == 0 else "" if i % 7 == 0 else f"text {i}")
            for domain, n in sizes.items() for i in range(1, n + 1)]
    holdout = spark.createDataFrame(rows, "doc_id string, domain string, text string")
    chosen = held.scored_candidates(holdout, max_docs=5).toPandas()
    expected = []
    for domain in sizes:
        ids = [d for d, dom, text in rows if dom == domain and text]
        expected += sorted(ids, key=lambda d: (held.doc_key(held.HOLDOUT_ORDER, d), d))[:5]
    assert sorted(chosen["doc_id"]) == sorted(expected)
    assert (chosen["text"] == "text " + chosen["doc_id"].str.split("-").str[1]).all()
    assert _key_limit(sizes["big"], 5) < "g" == _key_limit(sizes["mid"], 5)


def test_padding_and_separator_bytes_are_not_scored():
    import torch

    from samplemix_spark.evaluation.proxy import ByteLM, document_bits, document_windows

    preset = PRESETS["test"]
    torch.manual_seed(0)
    model = ByteLM(preset)
    texts = [b"x" * 5, b"abc" * 30]
    cut = document_windows(texts, preset.context, held.SEPARATOR)
    assert cut.mask.sum().item() == sum(len(t) for t in texts)
    bits = document_bits(model, cut, 4, torch.device("cpu"))
    # A document scored alone or beside another gets the same bits: no byte of one is in the other's sum.
    alone = [document_bits(model, document_windows([t], preset.context, held.SEPARATOR), 4, torch.device("cpu"))[0]
             for t in texts]
    np.testing.assert_allclose(bits, alone, rtol=1e-5)
    # The sum equals an independent loop over the document's own bytes, each after its prefix in its window.
    sequence = held.SEPARATOR + texts[0]
    with torch.no_grad():
        logits = model(torch.tensor([list(sequence[:-1])]))[0]
        log_p = torch.log_softmax(logits.float(), dim=-1)
    expected = -sum(log_p[i - 1, sequence[i]].item() for i in range(len(held.SEPARATOR), len(sequence))) / np.log(2)
    assert bits[0] == pytest.approx(expected, rel=1e-5)


def test_a_trained_proxy_beats_a_byte_unigram_model_on_every_held_out_domain(spark, corpus):
    _, cfg = corpus
    job = _job(cfg, spark, seed=0)
    final = _final_bpb(run_job(job))
    train = read_stream(job.stream_files, job.job, job.budget_bytes, job.copies_bytes).data
    for domain, docs in held.load(job.held_out).items():
        unigram = unigram_bits_per_byte(train, np.frombuffer(held.SEPARATOR.join(docs.texts), dtype=np.uint8))
        assert final[domain] < unigram - 0.3, (domain, final[domain], unigram)


def test_the_same_seed_gives_the_same_losses_on_cpu(spark, corpus):
    _, cfg = corpus
    # Determinism does not depend on size: a short run scored on a few short documents shows it.
    small = {"spec": _spec(spark, cfg, doc_bytes=512, max_docs=20, step_docs=8), "budget_bytes": 16384}
    first, again = run_job(_job(cfg, spark, 5, **small)), run_job(_job(cfg, spark, 5, **small))
    other = run_job(_job(cfg, spark, 6, **small))
    assert first["bits"].tolist() == again["bits"].tolist()
    assert first["bits"].tolist() != other["bits"].tolist()


def _evaluation_config(cfg, out, **settings):
    values = {"preset": "test", "seeds": [0, 1], "out": str(out), **settings}
    return dataclasses.replace(cfg, evaluate=build_config({"evaluate": values}).evaluate)


def test_a_mixture_without_code_models_held_out_code_worse(spark, corpus, tmp_path):
    _, cfg = corpus
    natural = _mix(spark, cfg, tmp_path / "natural", method="domain")
    no_code = _mix(spark, cfg, tmp_path / "no_code", method="domain", domain_weights={
        "source": "manual", "manual": {"business": 1, "sports": 1, "tech": 1, "code": 0}})
    ev = _evaluation_config(cfg, tmp_path / "out", domains=["business", "tech"], max_eval_docs=12)
    summary = evaluate(spark, ev, [natural.tables.warehouse, no_code.tables.warehouse], ["natural", "no_code"])
    stored = Evaluation.read(store_for(spark, cfg))
    table, docs = stored.proxy_eval, stored.docs
    # Every scored document has a row per run and seed: min(held-out rows, max_eval_docs) per domain.
    holdout = store_for(spark, cfg).read("holdout").toPandas().groupby("domain").size()
    per_run = docs.groupby(["run", "seed", "domain"]).size().unstack("domain")
    assert (per_run == holdout.clip(upper=12)).all().all() and len(per_run) == 4
    final = table[(table["scope"] == "all") & (table["domain"] != "_all")]
    assert (final.set_index("domain")["docs"] == holdout.clip(upper=12).reindex(final["domain"]).to_numpy()).all()
    assert final["bpb_lo"].le(final["bpb"]).all() and final["bpb_hi"].ge(final["bpb"]).all()
    # A planted real difference: on held-out code, the run without code is worse, beyond its paired interval.
    on_code = summarise(stored, domains=["code"])
    assert on_code.loc["no_code", "vs_natural"].startswith("worse"), on_code.loc["no_code", "vs_natural"]
    assert "2 seeds, seed variance included" in on_code.loc["no_code", "vs_natural"]
    # The macro average covers evaluate.domains only.
    macro = table[table["domain"] == "_all"].set_index(["run", "seed", "scope", "step"])["bpb"]
    chosen = table[table["domain"].isin(["business", "tech"])].groupby(["run", "seed", "scope", "step"])["bpb"].mean()
    pd.testing.assert_series_equal(macro.sort_index(), chosen.sort_index(), check_names=False)
    # Another view of the same proxies: the macro over one domain is that domain's loss.
    view = summarise(stored, domains=["tech"])
    np.testing.assert_allclose(view["macro"], view["tech"], rtol=1e-12)
    assert set(table["method"]) == {"domain:natural", "domain:manual"} and set(table["seed"]) == {0, 1}
    # The two held-out halves split every domain's scored documents, within one document of equal size.
    halves = table[table["scope"].isin(["select", "report"]) & (table["domain"] != "_all")]
    per_half = halves.groupby(["run", "seed", "domain", "scope"])["docs"].first().unstack("scope")
    whole = final.groupby(["run", "seed", "domain"])["docs"].first()
    assert (per_half.sum(axis=1) == whole.reindex(per_half.index)).all()
    assert ((per_half["select"] - per_half["report"]).abs() <= 1).all()
    # The summary rests on the report half: its macro is the report rows' seed mean.
    report_macro = table[(table["scope"] == "report") & (table["domain"] == "_all")].groupby("run")["bpb"].mean()
    np.testing.assert_allclose(summary["macro"], report_macro.reindex(summary.index), rtol=1e-12)
    assert (summary["half"] == "report").all() and (summary["docs"] == per_half["report"].groupby(
        "domain").first().reindex(["business", "tech"]).sum()).all()
    # Steps to natural, on the report half's per-step documents: the first step whose seed-mean macro is at or
    # below natural's final one.
    steps = held.in_half(stored.step_docs, "report")
    steps = steps[steps["domain"].isin(["business", "tech"])].groupby(["run", "seed", "step", "domain"])[
        ["bits", "bytes"]].sum()
    curve = (steps["bits"] / steps["bytes"]).groupby(["run", "seed", "step"]).mean().groupby(["run", "step"]).mean()
    target = curve["natural"].iloc[-1]
    for run in ("natural", "no_code"):
        reached = curve[run][curve[run] <= target + 1e-12]
        expected = str(int(reached.index[0])) if len(reached) else "not reached"
        assert summary.loc[run, "steps_to_natural"].split(" [")[0] == expected
    assert (summary["evaluations"] == PRESETS["test"].evaluations).all()
    assert (tmp_path / "out" / "learning_curves.png").stat().st_size > 0
    assert (tmp_path / "out" / "domain_bpb.png").stat().st_size > 0

    # One comparison page: training-data domain shares, then the proxy evaluation of both runs.
    from samplemix_spark.report.compare import compare_runs

    compare_runs(spark, [natural.tables.warehouse, no_code.tables.warehouse], "delta", tmp_path / "cmp",
                 ["natural", "no_code"])
    page = (tmp_path / "cmp" / "compare.html").read_text()
    shares = pd.read_csv(tmp_path / "cmp" / "domain_shares.csv", index_col=0)
    assert shares.loc["code", "no_code"] == 0 and shares.loc["code", "natural"] > 0
    for text in ("Domain token shares", "steps_to_natural", "vs_natural", f"{summary.loc['no_code', 'macro']:.4f}",
                 'alt="learning_curves"', 'alt="domain_bpb"', 'alt="compare"'):
        assert text in page, text
    assert 'src="data:image/png;base64,' in page and 'src="compare.png"' not in page


def test_the_same_mixture_under_two_mixing_seeds_is_tied(spark, corpus, tmp_path):
    """A/A: only the Bernoulli draws differ, so the verdict must not claim a difference."""
    _, cfg = corpus
    a = _mix(spark, cfg, tmp_path / "a", seed=11)
    b = _mix(spark, cfg, tmp_path / "b", seed=12)
    ev = _evaluation_config(cfg, tmp_path / "out", seeds=[0, 1, 2], max_eval_docs=12, budget_bytes=32768)
    evaluate(spark, ev, [a.tables.warehouse, b.tables.warehouse], ["a", "b"])
    stored = Evaluation.read(store_for(spark, cfg))
    scores = intervals.Scores.from_frame(stored.docs)
    strata = intervals.strata(scores.domains, scores.domain_names())
    difference = intervals.paired_difference(scores, "b", "a", strata)
    assert difference.word == "tied" and difference.seed_variance, difference.describe()
    assert "seed variance included" in difference.describe()


def test_runs_with_different_held_out_sets_are_refused(spark, corpus, tmp_path):
    _, cfg = corpus
    other = _corpus_config(tmp_path, ingest={"holdout_seed": 8})
    for stage in ("ingest", "quality", "diversity", "mix"):
        run_stage(spark, other, stage)
    with pytest.raises(InputError, match="different held-out sets"):
        evaluate(spark, cfg, [cfg.tables.warehouse, other.tables.warehouse], ["a", "b"])
    none = make_config(tmp_path / "plain", [tmp_path / "src" / "corpus.jsonl"])
    for stage in ("ingest", "quality", "diversity", "mix"):
        run_stage(spark, none, stage)
    with pytest.raises(InputError, match="no held-out set"):
        evaluate(spark, cfg, [none.tables.warehouse], reference=False)


def test_evaluate_command_judges_one_run_against_its_natural_reference(spark, corpus, tmp_path):
    root, cfg = corpus
    config = tmp_path / "eval.yaml"
    import yaml

    config.write_text(yaml.safe_dump(cfg.to_dict()))
    out = tmp_path / "out"
    result = samplemix("evaluate", cfg.tables.warehouse, "--config", str(config), "--preset", "test",
                       "--seeds", "0", "1", "--out", str(out), "--set", "evaluate.budget_bytes=32768", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "steps_to_natural" in result.stderr and "natural" in result.stderr
    # Staging the reference's copies hints a broadcast, which the embedded engine ignores without a warning.
    assert "Hint operation" not in result.stderr
    table = store_for(spark, cfg).read("proxy_eval").toPandas()
    assert set(table["run"]) == {"wh", "natural"}
    assert list(pd.read_csv(out / "evaluate.csv")["run"]) == ["natural", "wh"]
    # The reference is counts in the warehouse: no second output, nothing under evaluate.out but the figures.
    warehouse = Path(cfg.tables.warehouse)
    assert (warehouse / "reference_natural_reference_counts").exists()
    assert not (warehouse / "reference_natural_output").exists() and not (out / "reference_natural").exists()
    page = samplemix("report", "--config", str(config), "--html", str(tmp_path / "page" / "report.html"),
                     cwd=tmp_path)
    assert page.returncode == 0, page.stderr[-2000:]
    assert "Proxy evaluation" in (tmp_path / "page" / "report.html").read_text()


def test_the_natural_reference_as_counts_streams_what_its_written_mix_would(spark, corpus, tmp_path):
    """No second output: the reference is counts, and a proxy of it reads a staged table about its budget."""
    from samplemix_spark.evaluation.evaluate import natural_mixing, natural_reference, open_run
    from samplemix_spark.mixing import MixStep

    _, cfg = corpus
    run = open_run(spark, cfg.tables, cfg.tables.warehouse, "wh")
    counted_cfg = dataclasses.replace(cfg, tables=dataclasses.replace(cfg.tables, warehouse=str(tmp_path / "ev")))
    reference = natural_reference(spark, counted_cfg, run)
    written = dataclasses.replace(cfg, mixing=natural_mixing(cfg, run),
                                  tables=dataclasses.replace(cfg.tables, warehouse=str(tmp_path / "written")))
    MixStep(written).run(spark, store_for(spark, written), inputs=run.store)
    assert not (tmp_path / "ev" / "reference_natural_output").exists()
    files, counts = reference.proxy_files()
    output = store_for(spark, written).read("output")
    assert reference.copies_bytes() == output_bytes(store_for(spark, written)) > 0
    # Its counts are the written mix's: one row per selected document, its copies in the output.
    rows = reference.store.read("reference_counts").toPandas().set_index("doc_id")["count"].sort_index()
    copies_per_doc = output.groupBy("doc_id").count().toPandas().set_index("doc_id")["count"].sort_index()
    pd.testing.assert_series_equal(rows, copies_per_doc, check_dtype=False, check_names=False)
    copies = Copies(files, counts, 0, reference.copies_bytes())
    budget = reference.copies_bytes() // 20
    streams = _staging(spark, tmp_path)
    from_counts = training_stream(streams, copies, budget, seed=4)
    # The proxy's input: the staged rows, about twice its budget, never the mix.
    staged = streams.read("proxy_copies").toPandas()
    staged_bytes = sum(len(text.encode()) + len(held.SEPARATOR) for text in staged["text"])
    longest = max(len(text.encode()) for text in output.toPandas()["text"]) + len(held.SEPARATOR)
    assert budget < staged_bytes <= 4 * (budget + 1) + 2 * longest < reference.copies_bytes() / 2
    assert len(staged) < output.count() / 4
    from_output = training_stream(streams, Copies(tuple(snapshot_files(store_for(spark, written)))), budget, seed=4)
    assert np.array_equal(from_counts.data, from_output.data)


def test_a_rerun_reads_stored_proxies_and_trains_only_what_is_missing(spark, corpus, tmp_path, monkeypatch):
    from samplemix_spark.evaluation import evaluate as evaluate_module
    from samplemix_spark.evaluation import swarm

    _, cfg = corpus
    trained = []

    def counting(job, say=None, on_evaluation=None):
        trained.append((job.run, job.seed, job.budget_bytes))
        return run_job(job, say, on_evaluation)

    monkeypatch.setattr(swarm, "run_job", counting)
    natural = _mix(spark, cfg, tmp_path / "natural", method="domain")
    alpha = _mix(spark, cfg, tmp_path / "alpha", alpha=0.5)
    runs = [natural.tables.warehouse, alpha.tables.warehouse]
    # Short proxies: what is stored and reused does not depend on their length.
    ev = _evaluation_config(cfg, tmp_path / "out", seeds=[0], max_eval_docs=6, budget_bytes=16384)
    evaluate(spark, ev, runs, ["natural", "alpha"])
    first = Evaluation.read(store_for(spark, cfg)).docs
    assert sorted(trained) == [("alpha", 0, 16384), ("natural", 0, 16384)]
    # Mixed again (new files, same content) and renamed: nothing is retrained, the figures are the same,
    # and no run's output is aggregated for its bytes, which only training needs.
    _mix(spark, cfg, tmp_path / "natural", method="domain")
    monkeypatch.setattr(evaluate_module, "output_bytes", lambda store: pytest.fail("output bytes aggregated"))
    evaluate(spark, ev, runs, ["natural_again", "alpha"])
    monkeypatch.undo()
    monkeypatch.setattr(swarm, "run_job", counting)
    again = Evaluation.read(store_for(spark, cfg)).docs.replace({"run": {"natural_again": "natural"}})
    assert len(trained) == 2
    key = ["run", "seed", "doc_id"]
    pd.testing.assert_frame_equal(first.sort_values(key).reset_index(drop=True),
                                  again.sort_values(key).reset_index(drop=True))
    # A new seed trains only its proxies; another budget or another mix retrains.
    evaluate(spark, dataclasses.replace(ev, evaluate=dataclasses.replace(ev.evaluate, seeds=[0, 1])), runs,
             ["natural", "alpha"])
    assert sorted(trained[2:]) == [("alpha", 1, 16384), ("natural", 1, 16384)]
    evaluate(spark, dataclasses.replace(ev, evaluate=dataclasses.replace(ev.evaluate, budget_bytes=8192)),
             runs[:1], ["natural"], reference=False)
    _mix(spark, cfg, tmp_path / "alpha", alpha=0.6)
    evaluate(spark, ev, runs[1:], ["alpha"], reference=False)
    assert trained[4:] == [("natural", 0, 8192), ("alpha", 0, 16384)]


def test_the_demo_study_and_the_fidelity_study_run_and_share_their_proxies(corpus, tmp_path):
    """Both benchmark studies end to end at the test preset, on the test corpus instead of the quick start."""
    import subprocess
    import sys

    import yaml

    from .conftest import REPO

    _, cfg = corpus
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(cfg.to_dict()))

    def bench(script: str, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--config", str(config),
                               "--out", str(tmp_path / "study"), "--set", "evaluate.budget_bytes=32768", *args],
                              cwd=tmp_path, capture_output=True,
                              text=True, timeout=900)  # about 40 s alone; several times that on 2 shared cores
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    demo = bench("evaluate_demo.py", "--preset", "test", "--seeds", "0", "--methods", "natural", "samplemix_a0.5",
                 "quadmix")
    assert "Macro over every held-out domain" in demo.stdout
    assert {"natural", "samplemix_a0.5", "quadmix"} <= set(demo.stdout.split())
    fid = bench("proxy_fidelity.py", "--small", "test", "--small-seeds", "0", "--reference", "test",
                "--reference-budget", "65536", "--methods", "natural", "samplemix_a0.5", "samplemix_a1.0")
    # The plan comes before any training, and the demo study's two proxies are read back, not retrained.
    plan = fid.stdout.splitlines()[0]
    assert plan.startswith("plan: small preset test") and "(2 stored); 1 to train" in plan, fid.stdout[:500]
    assert "Spearman's rho between the rankings" in fid.stdout
    pairs = pd.read_csv(tmp_path / "study" / "proxy_fidelity" / "pairs.csv")
    # The reference's two seeds (the default) give a seed variance; the small preset's one seed does not, so
    # none of its pairs is called better or worse.
    assert len(pairs) == 3 and set(pairs["reference_word"]) <= {"better", "worse", "tied"}
    assert set(pairs["small_word"]) == {"undetermined"}


def test_the_time_left_comes_from_the_first_steps_then_from_finished_proxies():
    from samplemix_spark.evaluation.swarm import ProxyClock

    clock = ProxyClock(total=4)
    assert clock.first_steps(0, 100, 0.0) is None
    assert "about 26.7 min for 4 proxies (400 s each, from the first proxy's first 25 of 100 steps)" \
        in clock.first_steps(25, 100, 100.0)
    assert clock.first_steps(50, 100, 200.0) is None  # said once
    assert "1 of 4 proxies trained; about 15.0 min left (300 s per proxy" in clock.proxy_done(300.0)
    assert "2 of 4 proxies trained; about 10.0 min left (300 s per proxy" in clock.proxy_done(300.0)
    assert "4 of 4 proxies trained; about 0.0 min left" in (clock.proxy_done(100.0), clock.proxy_done(500.0))[1]
