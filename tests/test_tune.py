"""``samplemix tune``: candidate mixes without output tables, a known best setting, resume."""

from __future__ import annotations

import dataclasses
import json
import logging
import re

import numpy as np
import pytest

from samplemix_spark.config import TablesConfig, build_config
from samplemix_spark.evaluation import evaluate as ev
from samplemix_spark.evaluation import holdout as held
from samplemix_spark.evaluation.stream import Copies, training_stream
from samplemix_spark.evaluation.swarm import by_candidate, candidate_bytes
from samplemix_spark.evaluation.tune import SEARCHED, Candidate, grid, tune
from samplemix_spark.mixing import MixStep
from samplemix_spark.pipeline import run_stage
from samplemix_spark.tables import TableStore
from samplemix_spark.tables.files import snapshot_files

from . import evaluation_corpus
from .conftest import make_config, store_for


def _records() -> list[dict]:
    """Code has low quality and high diversity, news the reverse: alpha = 1 mixes mostly code, alpha = 0 news."""
    rows = evaluation_corpus.records(60)
    for i, row in enumerate(rows):
        code = row["domain"] == "code"
        row["quality_score"] = (1.0 if code else 9.0) + (i % 7) / 10
        row["diversity_score"] = (0.9 if code else 0.1) + (i % 5) / 100
    return rows


@pytest.fixture(scope="module")
def scored(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    source = root / "src" / "corpus.jsonl"
    source.parent.mkdir(parents=True)
    source.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    cfg = make_config(root / "wh", [source], ingest={"holdout_fraction": 0.15},
                      evaluate={"preset": "test", "seeds": [0, 1], "domains": ["code"]}, tune={"confirm_seeds": 0})
    for stage in ("ingest", "quality", "diversity"):
        run_stage(spark, cfg, stage)
    return root, cfg


def test_a_candidate_stream_equals_the_stream_of_its_written_output(spark, scored, tmp_path):
    root, cfg = scored
    candidate = Candidate(0.5, 0.2)
    store = store_for(spark, cfg)
    from samplemix_spark.evaluation.tune import candidate_counts
    from samplemix_spark.mixing.weights import scored_documents

    store.write(by_candidate(candidate_counts(scored_documents(store), cfg.mixing, [Candidate(1.0, 0.2), candidate],
                                              store.hash_scheme)),
                "tune_counts")
    counts = store.read("tune_counts").where("candidate = 1").toPandas()
    written = dataclasses.replace(cfg, mixing=candidate.mixing(cfg.mixing),
                                  tables=dataclasses.replace(cfg.tables, warehouse=str(tmp_path / "mix")))
    MixStep(written).run(spark, store_for(spark, written), inputs=store)
    output = store_for(spark, written).read("output").toPandas()
    assert counts["count"].sum() == len(output)
    total = sum(len(t.encode()) + 2 for t in output["text"])
    assert candidate_bytes(store, "tune_counts")[1] == total
    copies = Copies(tuple(snapshot_files(store, "documents")), tuple(snapshot_files(store, "tune_counts")), 1, total)
    streams = TableStore(spark, TablesConfig(warehouse=str(tmp_path / "streams")))
    from_counts = training_stream(streams, copies, 40_000, seed=2)
    from_output = training_stream(streams, Copies(tuple(snapshot_files(store_for(spark, written)))), 40_000, seed=2)
    assert np.array_equal(from_counts.data, from_output.data)


def test_a_search_above_sample_docs_mixes_a_hashed_sample_with_its_budget_scaled(spark, scored):
    from samplemix_spark.evaluation.search_sample import search_input
    from samplemix_spark.evaluation.tune import candidate_counts
    from samplemix_spark.mixing.weights import scored_documents

    from .oracle import spark_xxhash64_uniform

    _, cfg = scored
    store = store_for(spark, cfg)
    everything = scored_documents(store).toPandas()
    n, tokens = len(everything), float(everything["n_tokens"].sum())
    whole = search_input(store, cfg, scored_documents(store))
    assert whole.sample_docs == 0 and whole.fingerprint_parts() == {} and whole.mixing == cfg.mixing
    small = dataclasses.replace(cfg, tune=dataclasses.replace(cfg.tune, sample_docs=n // 4),
                                mixing=dataclasses.replace(cfg.mixing, target_tokens=tokens / 2, target_fraction=None))
    chosen = search_input(store, small, scored_documents(store))
    sampled = set(chosen.scored.select("doc_id").toPandas()["doc_id"])
    expected = {d for d in everything["doc_id"]
                if spark_xxhash64_uniform(d, small.tune.seed, "tune-sample") < (n // 4) / n}
    assert sampled == expected and 0 < len(sampled) < n
    assert chosen.fingerprint_parts() == {"sample_docs": n // 4}
    # Half the corpus's tokens becomes half the sample's.
    assert chosen.mixing.target_tokens is None and chosen.mixing.target_fraction == pytest.approx(0.5)
    counts = candidate_counts(chosen.scored, chosen.mixing, [Candidate(0.5, 0.2)], store.hash_scheme).toPandas()
    assert set(counts["doc_id"]) <= sampled and len(counts) > 0


def test_the_swarm_sample_keeps_every_domain_a_floor_of_documents(spark, scored):
    from pyspark.sql import functions as F

    from samplemix_spark.evaluation.bimix_swarm import Mixture, mixture_counts
    from samplemix_spark.evaluation.search_sample import domain_floor_input
    from samplemix_spark.mixing.weights import scored_documents

    from .oracle import spark_xxhash64_uniform

    _, cfg = scored
    store = store_for(spark, cfg)
    # One domain keeps 12 documents: a rare domain beside a large one.
    skewed = scored_documents(store).where((F.col("domain") == "code") | (F.col("doc_id") < F.lit("4")))
    everything = skewed.toPandas()
    sizes = everything.groupby("domain").size()
    rare, large = sizes.idxmin(), sizes.idxmax()
    assert sizes[rare] * 3 < sizes[large]
    n, target = len(everything), len(everything) // 4
    small = dataclasses.replace(cfg, tune=dataclasses.replace(cfg.tune, sample_docs=target),
                                mixing=dataclasses.replace(cfg.mixing, target_tokens=2.0 * everything["n_tokens"].sum(),
                                                           target_fraction=None))
    chosen = domain_floor_input(store, small, skewed)
    rates = {d: min(1.0, max(target / n, target / len(sizes) / k)) for d, k in sizes.items()}
    expected = {d for d, domain in zip(everything["doc_id"], everything["domain"])
                if spark_xxhash64_uniform(d, small.tune.seed, "tune-sample") < rates[domain]}
    sampled = chosen.scored.toPandas()
    assert set(sampled["doc_id"]) == expected
    # The rare domain is drawn at a higher rate than the corpus-wide one, the large one at that rate.
    assert rates[rare] > target / n and rates[large] == target / n
    assert sampled["domain"].value_counts()[rare] >= 0.5 * min(sizes[rare], target / len(sizes))
    assert chosen.fingerprint_parts() == {"sample_docs": target, "sample_floor": "per domain"}
    assert chosen.mixing.target_fraction == pytest.approx(2.0)
    # Each domain's token share in a mixture's counts follows the mixture, whatever rate the domain was drawn at.
    proportions = {d: 0.5 if d == rare else 0.5 / (len(sizes) - 1) for d in sizes.index}
    counts = mixture_counts(chosen.scored, chosen.mixing, [Mixture("even", proportions)], store.hash_scheme)
    counted = counts.toPandas().merge(sampled, on="doc_id")
    tokens = (counted["count"] * counted["n_tokens"]).groupby(counted["domain"]).sum()
    assert set(counted["doc_id"]) <= expected
    assert tokens[rare] / tokens.sum() == pytest.approx(0.5, abs=0.1)
    whole = domain_floor_input(store, cfg, skewed)
    assert whole.sample_docs == 0 and whole.fingerprint_parts() == {} and whole.scored.count() == n


def test_tune_picks_the_setting_that_feeds_the_scored_domain_and_resumes(spark, scored, capsys, caplog):
    root, cfg = scored
    out = root / "out"
    caplog.set_level(logging.INFO)
    confirming = dataclasses.replace(cfg, tune=dataclasses.replace(cfg.tune, confirm_seeds=1))
    summary = tune(spark, confirming, grid([0.0, 1.0], [0.2], [None]), out)
    chosen = summary[summary["chosen"]]
    assert chosen["alpha"].tolist() == [1.0] and not summary["tied"].any()
    assert chosen["p_best"].iat[0] > 0.9 and summary["p_best"].sum() == pytest.approx(1.0)
    assert capsys.readouterr().out.strip().endswith("--set mixing.alpha=1 --set mixing.tau=0.2")
    # The chosen setting and the runner-up were trained again on a fresh seed and reported on the report half;
    # with one fresh seed there is no seed variance, so their difference is undetermined.
    assert "tune: confirming the choice on fresh seeds: 2 proxies" in caplog.text
    assert summary["confirmed"].str.contains("on seeds \\[2\\]").all()
    assert "minus the runner-up: undetermined" in chosen["confirmed"].iat[0]
    assert (summary["select_docs"] + summary["report_docs"] == len(held.load(ev.held_out_spec(
        cfg, store_for(spark, cfg)))["code"].doc_ids)).all()
    table = store_for(spark, cfg).read("tune").toPandas()
    assert len(table) == 2 * 3 * (len(set(table["domain"])))  # 2 settings x 3 seeds x (domains + _all)
    table = table[table["seed"] < 2]
    macro = table[table["domain"] == "_all"]
    assert (macro["bpb"].to_numpy() == table[table["domain"] == "code"]["bpb"].to_numpy()).all()
    assert set(table.loc[table["chosen"], "alpha"]) == {1.0}
    assert (out / "tune.png").stat().st_size > 0

    # A rerun with one more setting trains only that setting's proxies and keeps the earlier losses.
    again = tune(spark, cfg, grid([0.0, 0.5, 1.0], [0.2], [None]), out)
    rerun = store_for(spark, cfg).read("tune").toPandas()
    before = table.sort_values(["alpha", "seed", "domain"])[["alpha", "seed", "domain", "bpb"]]
    after = rerun[rerun["alpha"] != 0.5].sort_values(["alpha", "seed", "domain"])[["alpha", "seed", "domain", "bpb"]]
    assert before.to_numpy().tolist() == after.to_numpy().tolist()
    assert sorted(again["alpha"]) == [0.0, 0.5, 1.0]
    caplog.clear()
    tune(spark, cfg, grid([0.0, 0.5, 1.0], [0.2], [None]), out)
    assert "tune: 6 proxies (6 stored); 0 to train" in caplog.text


def test_tune_without_a_held_out_set_is_refused(spark, tmp_path):
    from samplemix_spark.errors import InputError

    source = evaluation_corpus.write(tmp_path / "src" / "c.jsonl", 10)
    cfg = make_config(tmp_path / "wh", [source])
    for stage in ("ingest", "quality", "diversity"):
        run_stage(spark, cfg, stage)
    with pytest.raises(InputError, match="needs a held-out set"):
        tune(spark, cfg, grid([0.5], [0.2], [None]), tmp_path / "out")


def test_candidate_settings_are_validated():
    from samplemix_spark.errors import ConfigError

    with pytest.raises(ConfigError, match="mixing.alpha"):
        Candidate(1.5, 0.2).mixing(build_config({}).mixing)


def test_tune_recomputes_the_macro_for_new_domains_and_retrains_after_a_score_change(spark, scored, caplog):
    root, cfg = scored
    out = root / "out_stale"
    caplog.set_level(logging.INFO)
    tune(spark, cfg, grid([1.0], [0.2], [None]), out)
    # Other macro domains: nothing to train, and _all is the mean over the new domains.
    wider = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, domains=["code", "tech"]))
    caplog.clear()
    tune(spark, wider, grid([1.0], [0.2], [None]), out)
    assert "tune: 2 proxies (2 stored); 0 to train" in caplog.text
    table = store_for(spark, cfg).read("tune").toPandas()
    per_domain = table.pivot_table(index="seed", columns="domain", values="bpb")
    np.testing.assert_allclose(per_domain["_all"], (per_domain["code"] + per_domain["tech"]) / 2, rtol=1e-12)
    # A changed score table makes every stored proxy stale: it is retrained, and the log says why.
    store = store_for(spark, cfg)
    quality = store.read("quality").toPandas()
    store.write(spark.createDataFrame(quality.assign(quality=quality["quality"] * 0.5)), "quality")
    caplog.clear()
    tune(spark, cfg, grid([1.0], [0.2], [None]), out)
    assert "trained under other settings" in caplog.text
    assert "(0 stored); 2 to train" in caplog.text
    docs = store.read("tune_docs").toPandas()
    assert docs["fingerprint"].nunique() == 1 and len(docs.drop_duplicates(["alpha", "seed"])) == 2


def test_tune_on_the_cpu_preset_points_at_what_that_preset_can_decide(spark, scored, caplog):
    root, cfg = scored
    cpu = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, preset="cpu", seeds=[0],
                                                                budget_bytes=8192))
    caplog.set_level(logging.INFO)
    tune(spark, cpu, grid([1.0], [0.2], [None]), root / "out_cpu")
    notes = [r.getMessage() for r in caplog.records if "what-the-cpu-preset-can-decide" in r.getMessage()]
    assert len(notes) == 1 and "docs/evaluation.md" in notes[0]


def test_stored_proxies_stay_valid_when_new_mixing_settings_keep_their_defaults(spark, scored):
    from samplemix_spark.evaluation.swarm import proxy_fingerprint

    _, cfg = scored
    store = store_for(spark, cfg)

    def fingerprint(**mixing) -> str:
        return proxy_fingerprint(dataclasses.replace(cfg, mixing=dataclasses.replace(cfg.mixing, **mixing)), store,
                                 "h", SEARCHED)

    default = fingerprint()
    assert fingerprint(rounding="bernoulli") == default
    assert fingerprint(rounding="systematic") != default
    other = dataclasses.replace(cfg.mixing.quadmix, omega=0.2)
    assert fingerprint(quadmix=other) != default


def test_quadmix_search_trains_each_drawn_setting_writes_tune_quadmix_and_resumes(spark, scored, capsys, caplog):
    from samplemix_spark.evaluation.tune_quadmix import tune_quadmix

    root, cfg = scored
    # Short proxies: the search's bookkeeping does not depend on their length.
    cfg = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, seeds=[0], budget_bytes=16384))
    caplog.set_level(logging.INFO)
    confirming = dataclasses.replace(cfg, tune=dataclasses.replace(cfg.tune, confirm_seeds=1))
    proposal = tune_quadmix(spark, confirming, 4, root / "out_quadmix")
    table = store_for(spark, cfg).read("tune_quadmix").toPandas().sort_values("sample")
    assert table["sample"].tolist() == [0, 1, 2, 3] and np.isfinite(table["observed_bpb"]).all()
    domains = {r["domain"] for r in store_for(spark, cfg).read("documents").select("domain").distinct().collect()}
    assert set(json.loads(table["parameters"].iat[0])) == {"lam", "omega", *(f"{p}.{d}" for p in ("eta", "epsilon")
                                                                            for d in domains)}
    assert table["loo_error"].nunique() == 1 and table["constant_error"].iat[0] > 0
    assert (table["shuffled_error_q05"] > 0).all()
    assert table["proposed"].sum() == (0 if proposal.accepted else 1)
    # The proposal (when accepted) and the best observed setting were trained again on the fresh seed 1 and
    # reported on the report half.
    confirmed = store_for(spark, cfg).read("tune_quadmix_confirm").toPandas()
    named = ["proposal", "best observed"] if proposal.accepted else ["best observed"]
    assert confirmed["setting"].tolist() == named and (confirmed["seeds"] == 1).all()
    assert "tune: confirming on fresh seeds: %d proxies" % len(named) in caplog.text
    assert (confirmed["report_lo"] <= confirmed["report_bpb"]).all()
    assert (confirmed["report_bpb"] <= confirmed["report_hi"]).all()
    best = table.loc[table["observed_bpb"].idxmin(), "parameters"]
    assert json.loads(confirmed.set_index("setting").loc["best observed", "parameters"]) == json.loads(best)
    fresh = store_for(spark, cfg).read("tune_quadmix_confirm_docs").toPandas()
    assert set(fresh["seed"]) == {1} and set(fresh["setting"]) == set(named)
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed.startswith("--set mixing.method=quadmix --set mixing.quadmix.")
    assert (root / "out_quadmix" / "tune_quadmix.csv").exists()
    caplog.clear()
    tune_quadmix(spark, cfg, 5, root / "out_quadmix")  # one more setting: only its proxy trains
    assert re.search(r"tune: 5 proxies of [0-9,]+ bytes, preset test \(4 stored\); 1 to train", caplog.text)
    again = store_for(spark, cfg).read("tune_quadmix").toPandas().sort_values("sample")
    assert again["observed_bpb"].iloc[:4].tolist() == table["observed_bpb"].tolist()
