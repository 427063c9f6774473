"""BiMix end to end: swarm design, proxy curves -> observations -> a recovered law, and a mix from its own swarm."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pandas as pd
import pytest

from samplemix_spark.errors import ConfigError, InputError
from samplemix_spark.evaluation.bimix_swarm import design, observations_from_curves
from samplemix_spark.evaluation.evaluate import evaluate
from samplemix_spark.mixing.baselines import bimix
from samplemix_spark.pipeline import run_stage

from . import evaluation_corpus
from .conftest import make_config, store_for

LAWS = {"news": (0.15, 30.0, 0.5, 2.0), "code": (0.3, 50.0, 0.4, 1.2), "mail": (0.05, 20.0, 0.6, 2.6)}


def test_design_varies_every_domain_and_keeps_the_floor():
    mixtures = design(["a", "b", "c", "d", "e"], 0.05)
    assert [m.name for m in mixtures] == ["uniform", "heavy:a", "heavy:b", "heavy:c", "heavy:d", "heavy:e"]
    for mixture in mixtures:
        assert sum(mixture.proportions.values()) == pytest.approx(1.0)
        assert min(mixture.proportions.values()) >= 0.05
    seen = {d: {round(m.proportions[d], 9) for m in mixtures} for d in "abcde"}
    assert all(values == {0.2, 0.5, 0.125} for values in seen.values())
    # A floor above the even share of the rest raises the rest and lowers the heavy share.
    tight = design(["a", "b", "c", "d", "e"], 0.2 - 1e-9)
    assert min(min(m.proportions.values()) for m in tight) >= 0.2 - 1e-9
    assert design(["a", "b"], 0.05)[1].proportions == {"a": 0.75, "b": 0.25}


@pytest.mark.parametrize("domains, floor, error, message", [
    (["only"], 0.05, InputError, "at least two domains"),
    (["a", "b", "c"], 0.34, ConfigError, "bimix_min_proportion"),
])
def test_a_design_that_cannot_vary_is_refused(domains, floor, error, message):
    with pytest.raises(error, match=message):
        design(domains, floor)


def _curves_from_law(mixtures, seeds, steps, noise, rng) -> tuple[pd.DataFrame, dict]:
    """Proxy curves in the trainer's format whose held-out losses follow ``LAWS``."""
    rows, labels = [], {}
    for i, mixture in enumerate(mixtures):
        for seed in seeds:
            job = len(labels)
            labels[job] = (i, seed)
            for step in steps:
                for domain, params in LAWS.items():
                    loss = bimix.BIMIX_LAW.func(np.array(params), np.array([mixture.proportions[domain]]),
                                                np.array([step]))[0]
                    rows.append((job, step, step * 2048, domain, loss * (1 + noise * rng.normal()), 1.0, 1.0,
                                 np.nan, 1000, 0.5))
    columns = ["job", "step", "tokens_seen", "domain", "bpb", "seconds", "bytes_per_s", "mfu", "n_params", "epochs"]
    return pd.DataFrame(rows, columns=columns), labels


def test_swarm_curves_recover_a_known_law():
    mixtures = design(sorted(LAWS), 0.05)
    steps = [128 * (i + 1) for i in range(8)]  # the cpu preset's evaluations
    curves, labels = _curves_from_law(mixtures, [0, 1], steps, 0.001, np.random.default_rng(3))
    shares = {i: m.proportions for i, m in enumerate(mixtures)}
    observations = observations_from_curves(curves, labels, shares, mixtures)
    assert observations["steps"].min() == 256  # the warm-up quarter is left out
    assert len(observations) == len(mixtures) * 2 * 7 * len(LAWS)
    fits = {fit.domain: fit for fit in bimix.fit_law(observations)}
    for domain, (alpha, b, beta, c) in LAWS.items():
        fit = fits[domain]
        assert fit.r2 > 0.99 and fit.mean_relative_error < 0.005
        assert fit.params["alpha"] == pytest.approx(alpha, rel=0.1, abs=0.01)
        assert fit.params["C"] == pytest.approx(c, rel=0.1)


@pytest.fixture(scope="module")
def corpus(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("bimix")
    source = evaluation_corpus.write(root / "src" / "corpus.jsonl", 60)
    cfg = make_config(root / "wh", [source], ingest={"holdout_fraction": 0.15},
                      mixing={"method": "domain", "budget_mode": "tokens", "domain_weights": {"source": "bimix"}},
                      evaluate={"preset": "test", "seeds": [0], "out": str(root / "eval")})
    for stage in ("ingest", "quality", "diversity"):
        run_stage(spark, cfg, stage)
    return root, cfg


def test_bimix_without_observations_runs_its_swarm_mixes_and_evaluates(spark, corpus, caplog):
    root, cfg = corpus
    caplog.set_level(logging.INFO)
    run_stage(spark, cfg, "mix")
    store = store_for(spark, cfg)
    observations = store.read("bimix_observations").toPandas()
    domains = sorted(set(observations["domain"]))
    assert len(domains) == 4 and len(set(observations["run"])) == len(domains) + 1
    for key in set(observations["design"]):
        assert min(json.loads(key).values()) >= 0.05
    # Realised token shares follow the design, and are exactly the sum of count x n_tokens per domain.
    counts = store.read("bimix_counts").toPandas().merge(
        store.read("documents").select("doc_id", "domain", "n_tokens").toPandas(), on="doc_id")
    tokens = (counts["count"] * counts["n_tokens"]).groupby([counts["candidate"], counts["domain"]]).sum()
    token_shares = tokens / tokens.groupby(level="candidate").transform("sum")
    names = [m.name for m in design(domains, 0.05)]
    for (run, key), rows in observations.groupby(["run", "design"]):
        shares = rows.groupby("domain")["proportion"].first()
        designed = pd.Series(json.loads(key))
        assert (shares - designed[shares.index]).abs().max() < 0.08, run
        expected = token_shares.loc[names.index(run)]
        np.testing.assert_allclose(shares.to_numpy(), expected.reindex(shares.index).to_numpy(), rtol=0, atol=1e-9)
    fit = store.read("bimix_fit").toPandas()
    assert sorted(fit["domain"]) == domains and fit["r2"].notna().all()
    assert fit["target_steps"].iat[0] == 512  # the test preset's 131,072 bytes / (32 x 8)
    run = store.read("mix_run").collect()[0]
    chosen = json.loads(run.domain_weights)
    assert run.weights_source == "bimix" and sum(chosen.values()) == pytest.approx(1.0)
    assert chosen == pytest.approx(dict(zip(fit["domain"], fit["proportion"])))

    # A rerun of the mix stage reads the swarm's table instead of training again.
    caplog.clear()
    run_stage(spark, cfg, "mix")
    assert f"({len(domains) + 1} already observed); 0 to train" in caplog.text
    assert json.loads(store.read("mix_run").collect()[0].domain_weights) == pytest.approx(chosen)

    # The BiMix mix is judged like any other run, against natural proportions (short proxies suffice here).
    short = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, budget_bytes=32768))
    summary = evaluate(spark, short, [cfg.tables.warehouse], ["bimix"])
    assert summary.loc["bimix", "method"] == "domain:bimix" and len(summary) == 2
    assert summary.loc["bimix", "vs_natural"] != "-"


def test_an_observations_file_still_needs_its_step_count():
    from samplemix_spark.config import build_config

    with pytest.raises(ConfigError, match="bimix_target_steps"):
        build_config({"mixing": {"method": "domain", "domain_weights": {
            "source": "bimix", "bimix_observations": ["obs.jsonl"]}}})
    assert build_config({"mixing": {"method": "domain", "domain_weights": {"source": "bimix"}}})


def test_regression_recovers_a_log_linear_law_and_proposes_its_optimum():
    from samplemix_spark.evaluation import regression
    from samplemix_spark.evaluation.bimix_swarm import random_mixtures

    domains = ["a", "b", "c", "d"]
    truth = np.array([2.0, -0.30, -0.10, 0.05, -0.02])  # b_0, then per domain
    mixtures = design(domains, 0.05) + random_mixtures(domains, 0.05, 12, seed=5)
    rng = np.random.default_rng(0)
    rows = []
    for mixture in mixtures:
        r = np.array([mixture.proportions[d] for d in domains])
        for seed in (0, 1):
            rows.append({"design": mixture.key(), "seed": seed, **dict(zip(domains, r)),
                         "macro": truth[0] + np.log(r) @ truth[1:] + 1e-4 * rng.normal()})
    model = regression.fit(pd.DataFrame(rows), domains)
    assert model.n_mixtures == 17
    np.testing.assert_allclose(model.coefficients, truth, atol=2e-3)
    assert model.loo_mean_abs_error < 5e-4
    proposal = regression.propose(model, 0.05)
    # Lagrange: the domains whose share lowers the loss split what the floor leaves in proportion to |b|.
    assert proposal["c"] == pytest.approx(0.05, abs=1e-6)
    free = 1 - 0.05
    expected = {d: free * b / truth[[1, 2, 4]].sum() for d, b in zip("abd", truth[[1, 2, 4]])}
    for domain, share in expected.items():
        assert proposal[domain] == pytest.approx(share, abs=0.01)


def test_a_regression_with_too_few_mixtures_is_refused():
    from samplemix_spark.evaluation import regression

    rows = [{"design": m.key(), "seed": 0, **m.proportions, "macro": 2.0} for m in design(["a", "b", "c"], 0.05)]
    with pytest.raises(InputError, match="needs more than 4 mixtures; the swarm has 4"):
        regression.fit(pd.DataFrame(rows), ["a", "b", "c"])


def test_tune_domains_extends_the_swarm_and_prints_proportions(spark, corpus, capsys):
    from samplemix_spark.evaluation.tune import tune_domains

    root, cfg = corpus
    proposal = tune_domains(spark, cfg, 2, root / "tune")
    store = store_for(spark, cfg)
    observations = store.read("bimix_observations").toPandas()
    assert len(set(observations["run"])) == 4 + 1 + 2
    table = store.read("tune_regression").toPandas()
    assert table["n_mixtures"].iat[0] == 7 and np.isfinite(table["loo_mean_abs_error"].iat[0])
    assert sum(proposal.values()) == pytest.approx(1.0) and min(proposal.values()) >= 0.05 - 1e-9
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("--set mixing.method=domain --set mixing.domain_weights.source=manual")
    import yaml

    from samplemix_spark.config import build_config

    manual = yaml.safe_load(line.split("manual=", 1)[1].strip("'"))
    assert build_config({"mixing": {"method": "domain", "domain_weights": {"source": "manual", "manual": manual}}})
    assert manual == pytest.approx(proposal, abs=1e-4)
