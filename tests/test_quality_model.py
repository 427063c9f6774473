"""The ordinal evaluator: training on real text, checkpoint reload, Spark scoring, mixing from it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from samplemix_spark.demo.synthetic import write_corpus
from samplemix_spark.errors import ConfigError, InputError
from samplemix_spark.pipeline import run_pipeline, run_stage
from samplemix_spark.quality.scorer import QualityScorer
from samplemix_spark.quality.train import holdout_mask, text_digests

from .conftest import make_config, store_for, write_jsonl
from .realtext import quality_labels


def _heldout_texts(labels_path, fraction=0.25):
    """The held-out texts in training order: by the SHA-256 of the text."""
    labels = pd.read_json(labels_path, lines=True)
    labels = labels.assign(digest=text_digests(labels["text"])).sort_values(["digest", "score"], kind="stable")
    return labels["text"][holdout_mask(labels["text"], fraction)].tolist(), labels


def test_frozen_training_beats_constant_baseline_and_reloads_identically(quality_checkpoint):
    checkpoint, report, labels_path = quality_checkpoint
    variant = report["variants"][0]
    assert (variant["mode"], variant["head"]) == ("frozen", "ordinal")
    assert variant["loss_history"][-1] < 0.5 * variant["loss_history"][0]
    assert variant["metrics"]["mae"] < report["baseline_constant"]["mae"]
    texts, _ = _heldout_texts(labels_path)
    scores, expected = QualityScorer(str(checkpoint)).score(texts)
    assert scores.tolist() == report["saved"]["heldout_predictions"]
    assert np.all((expected >= 0) & (expected <= 10))


def test_finetune_with_comparison_variants(spark, tmp_path):
    labels = write_jsonl(tmp_path / "labels.jsonl", quality_labels(40, 40))
    cfg = make_config(tmp_path / "wh", [labels], quality={"train": {
        "labels": [str(labels)], "mode": "finetune", "compare": True, "epochs": 2, "learning_rate": 1e-4,
        "max_tokens": 64, "head_epochs": 40, "holdout_fraction": 0.25, "output": str(tmp_path / "ckpt")}})
    run_stage(spark, cfg, "train-quality")
    report = json.loads((tmp_path / "ckpt" / "metrics.json").read_text())
    names = [(v["mode"], v["head"]) for v in report["variants"]]
    assert names == [("finetune", "ordinal"), ("finetune", "classification"),
                     ("frozen", "ordinal"), ("frozen", "classification")]
    for variant in report["variants"]:
        assert variant["loss_history"][-1] < variant["loss_history"][0], variant
        assert set(variant["metrics"]) == {"acc", "mae", "mse", "cacc"}
    assert (tmp_path / "ckpt" / "encoder" / "config.json").is_file()
    texts, _ = _heldout_texts(labels)
    assert QualityScorer(str(tmp_path / "ckpt")).score(texts)[0].tolist() == report["saved"]["heldout_predictions"]


def test_spark_scoring_equals_direct_scoring(spark, quality_checkpoint, tmp_path):
    checkpoint, _, labels_path = quality_checkpoint
    labels = pd.read_json(labels_path, lines=True)
    source = write_jsonl(tmp_path / "docs.jsonl",
                         [{"text": t, "domain": "d", "diversity_score": 0.5} for t in labels["text"]])
    cfg = make_config(tmp_path / "wh", [source], quality={"method": "model", "model_path": str(checkpoint),
                                                          "batch_size": 8},
                      ingest={"quality_column": None})
    run_pipeline(spark, cfg, ("ingest", "quality", "diversity", "mix", "report"))
    store = store_for(spark, cfg)
    scored = store.read("quality").join(store.read("documents"), "doc_id").toPandas().set_index("text")
    direct, expected = QualityScorer(str(checkpoint)).score(labels["text"].tolist())
    assert scored.loc[labels["text"], "quality"].tolist() == direct.tolist()
    np.testing.assert_allclose(scored.loc[labels["text"], "quality_expected"], expected, rtol=1e-5)
    assert set(scored["method"]) == {"model"} and scored["model_version"].nunique() == 1
    weights = store.read("weights").toPandas()
    assert len(weights) == len(labels) and np.isfinite(weights["c"]).all()


def test_mixing_runs_from_heuristic_scores(spark, tmp_path):
    paths = write_corpus(tmp_path / "data", 400, seed=2, n_files=2)
    cfg = make_config(tmp_path / "wh", paths, quality={"method": "heuristic"})
    run_pipeline(spark, cfg)
    store = store_for(spark, cfg)
    quality = store.read("quality").toPandas()
    assert len(quality) == 400 and quality["quality"].between(0, 10).all()
    assert store.read("report_summary").collect()[0].output_docs == store.read("output").count()


def test_missing_model_path_fails_before_spark_work(tmp_path, capsys):
    from samplemix_spark.cli import main

    # The remote URL points nowhere: the command must fail on the model path before connecting.
    assert main(["quality", "--set", "quality.method=model", "--set", f"quality.model_path={tmp_path}/none",
                 "--set", "engine.kind=remote", "--set", "engine.remote_url=sc://127.0.0.1:1",
                 "--set", "diversity.method=column", "--set", "ingest.diversity_column=d"]) == 2
    assert "quality.model_path" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="quality.model_path"):
        from samplemix_spark.quality.scorer import ModelQuality
        ModelQuality(make_config(tmp_path, ["x"], quality={"method": "model", "model_path": str(tmp_path)})).check()


def test_labels_from_seven_dimensions_and_bad_labels(spark, tmp_path):
    from samplemix_spark.config import QualityTrainConfig
    from samplemix_spark.quality.train import load_labels

    dims = ["clarity", "completeness", "structure", "credibility", "significance", "knowledge", "logic"]
    rows = [{"text": f"document {i}", **{d: (1 if d != "logic" else i % 4) for d in dims}} for i in range(30)]
    path = write_jsonl(tmp_path / "dims.jsonl", rows)
    cfg = make_config(tmp_path / "wh", [path])
    train = QualityTrainConfig(labels=[str(path)], dimension_columns=dims)
    labels = load_labels(spark, store_for(spark, cfg), train)
    assert dict(zip(labels["text"], labels["score"])) == {f"document {i}": 6 + i % 4 for i in range(30)}
    assert labels["digest"].tolist() == sorted(text_digests(labels["text"]))
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "x", "score": 11}] * 25)
    with pytest.raises(InputError, match="integer in 0..10"):
        load_labels(spark, store_for(spark, cfg), QualityTrainConfig(labels=[str(bad)]))


def test_labels_above_max_labels_are_a_hashed_sample_of_about_that_size(spark, tmp_path):
    from samplemix_spark.config import QualityTrainConfig
    from samplemix_spark.quality.train import load_labels

    rows = [{"text": f"labelled document number {i}", "score": i % 11} for i in range(400)]
    path = write_jsonl(tmp_path / "labels.jsonl", rows)
    store = store_for(spark, make_config(tmp_path / "wh", [path]))
    sample = load_labels(spark, store, QualityTrainConfig(labels=[str(path)], max_labels=100))
    # Binomial(400, 1/4): standard deviation 8.7, so 100 +- 40 is beyond four of them.
    assert 60 <= len(sample) <= 140
    assert set(sample["text"]) < {r["text"] for r in rows}
    assert all(int(t.rsplit(" ", 1)[1]) % 11 == s for t, s in zip(sample["text"], sample["score"]))
    again = load_labels(spark, store, QualityTrainConfig(labels=[str(path)], max_labels=100))
    assert sorted(again["text"]) == sorted(sample["text"])
    other_seed = load_labels(spark, store, QualityTrainConfig(labels=[str(path)], max_labels=100, seed=7))
    assert set(other_seed["text"]) != set(sample["text"])
    assert len(load_labels(spark, store, QualityTrainConfig(labels=[str(path)], max_labels=400))) == 400
