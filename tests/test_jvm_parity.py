"""The same jobs on classic JVM local Spark (Parquet tables) give the embedded engine's counts."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from deltalake import DeltaTable

from samplemix_spark.demo.synthetic import write_corpus

from .cli_sequence import run_sequence
from .conftest import REPO
from .test_cli import run_pipeline_cli

pytestmark = [pytest.mark.jvm,
              pytest.mark.skipif(shutil.which("java") is None, reason="classic Spark needs Java")]

JVM = ("engine.kind=jvm-local", "engine.master=local[2]", "tables.format=parquet",
       "engine.spark_conf={spark.sql.shuffle.partitions: 3, spark.driver.memory: 2g}")


def _sorted(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    return frame.sort_values(key).reset_index(drop=True)


@pytest.mark.parametrize("n_docs, n_files, mixing", [
    (20000, 10, ("mixing.tau=0.2",)),
    (4000, 5, ("mixing.tau=0.01", "mixing.alpha=1.0", "mixing.target_fraction=3.0", "mixing.rounding=systematic")),
    (2000, 3, ("mixing.method=quadmix", "mixing.budget_mode=tokens")),
])
def test_jvm_local_counts_equal_embedded_counts(tmp_path, n_docs, n_files, mixing):
    # The embedded engine and JVM Spark (3 shuffle partitions) split the files into different partitions.
    write_corpus(tmp_path / "data", n_docs, seed=21, n_files=n_files)
    embedded = tmp_path / "embedded"
    embedded.mkdir()
    (embedded / "data").symlink_to(tmp_path / "data")
    result = run_pipeline_cli(embedded, *mixing)
    assert result.returncode == 0, result.stderr
    jvm = tmp_path / "jvm"
    jvm.mkdir()
    (jvm / "data").symlink_to(tmp_path / "data")
    result = run_pipeline_cli(jvm, *mixing, *JVM)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "engine: jvm-local" in result.stderr

    sail_weights = _sorted(DeltaTable(str(embedded / "wh" / "weights")).to_pandas(), "doc_id")
    jvm_weights = _sorted(pd.read_parquet(jvm / "wh" / "weights"), "doc_id")
    assert len(sail_weights) == n_docs
    assert sail_weights["doc_id"].tolist() == jvm_weights["doc_id"].tolist()
    assert sail_weights["n_tokens"].tolist() == jvm_weights["n_tokens"].tolist()
    assert sail_weights["count"].tolist() == jvm_weights["count"].tolist()
    pd.testing.assert_series_equal(sail_weights["c"], jvm_weights["c"], rtol=1e-12)
    if "mixing.rounding=systematic" in mixing:  # the total lands within the largest document of its expectation
        n = sail_weights["n_tokens"].astype(float)
        assert abs((sail_weights["count"] * n).sum() - (sail_weights["c"] * n).sum()) <= n.max()

    sail_output = DeltaTable(str(embedded / "wh" / "output")).to_pandas()
    jvm_output = pd.read_parquet(jvm / "wh" / "output")
    key = ["doc_id", "replica"]
    pd.testing.assert_frame_equal(_sorted(sail_output, key[0]).sort_values(key).reset_index(drop=True),
                                  _sorted(jvm_output, key[0]).sort_values(key).reset_index(drop=True),
                                  check_dtype=False)


def test_jvm_local_without_delta_jars_says_so(tmp_path):
    write_corpus(tmp_path / "data", 50, seed=4, n_files=1)
    result = run_pipeline_cli(tmp_path, "engine.kind=jvm-local", "engine.master=local[1]")
    assert result.returncode == 2
    assert "no Delta Lake support" in result.stderr and "tables.format=parquet" in result.stderr


def test_model_quality_scores_on_jvm_local_equal_direct_scoring(quality_checkpoint, tmp_path):
    """Heuristic scores on JVM Spark are compared with the embedded engine's in test_pipeline_parity.py."""
    import numpy as np

    from samplemix_spark.quality.scorer import QualityScorer

    from .conftest import write_jsonl
    from .realtext import ENCYCLOPEDIC, SPAM, bbc_articles

    checkpoint, _, _ = quality_checkpoint
    texts = ENCYCLOPEDIC + SPAM + bbc_articles(40)
    write_jsonl(tmp_path / "data" / "docs.jsonl",
                [{"text": t, "domain": "d", "diversity_score": 0.5, "quality_score": 0} for t in texts])
    common = [f"--set=ingest.sources=[{tmp_path}/data/*.jsonl]", f"--set=tables.warehouse={tmp_path}/jvm",
              *[f"--set={o}" for o in JVM]]
    result = run_sequence([[stage, "--config", str(REPO / "conf" / "synthetic.yaml"), *common,
                            f"--set=quality.method={method}", f"--set=quality.model_path={checkpoint}"]
                           for stage, method in (("ingest", "heuristic"), ("quality", "model"))], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    documents = pd.read_parquet(tmp_path / "jvm" / "documents")[["doc_id", "text"]]
    jvm_model = pd.read_parquet(tmp_path / "jvm" / "quality").merge(documents, on="doc_id").set_index("text")
    direct, expected = QualityScorer(str(checkpoint)).score(texts)
    assert jvm_model.loc[texts, "quality"].tolist() == direct.tolist()
    np.testing.assert_allclose(jvm_model.loc[texts, "quality_expected"], expected, rtol=1e-5)


def test_proxies_run_as_spark_tasks_give_the_losses_of_a_sequential_run(spark, tmp_path):
    """JVM Spark stages the streams (one from an output, one from a candidate's counts, whose text is joined
    through broadcast ids) and trains the proxies as tasks; the embedded engine stages the same streams and
    trains them one after another."""
    import subprocess
    import sys

    from samplemix_spark.evaluation.swarm import run_local

    from .evaluation_corpus import staged_jobs

    result = subprocess.run([sys.executable, "-m", "tests.evaluation_corpus", str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    on_spark = pd.read_parquet(tmp_path / "spark_curves.parquet")
    sequential = run_local(staged_jobs(spark, tmp_path, "embedded"))
    jvm, embedded = (pd.read_parquet(tmp_path / f"streams-{engine}" / "proxy_copies") for engine in ("jvm", "embedded"))
    staged_key = ["job", "epoch", "key", "doc_id", "replica"]
    pd.testing.assert_frame_equal(jvm.sort_values(staged_key).reset_index(drop=True),
                                  embedded.sort_values(staged_key).reset_index(drop=True), check_dtype=False)
    key = ["job", "step", "doc_id"]
    # Two proxies, four domains: 3 per-step documents at each of the first 3 evaluations, 6 at the last.
    assert len(sequential) == 2 * 4 * (3 * 3 + 6)
    columns = key + ["domain", "tokens_seen", "bytes", "bits", "subset", "n_params", "epochs"]
    pd.testing.assert_frame_equal(_sorted(on_spark, "job").sort_values(key)[columns].reset_index(drop=True),
                                  sequential.sort_values(key)[columns].reset_index(drop=True), check_dtype=False)


def test_classifier_quality_on_jvm_local_equals_direct_scoring(tmp_path):
    """Each classifier format's scores through JVM Spark's Python workers equal the executor-side code run directly."""
    import numpy as np

    from samplemix_spark.models.classifier import BackboneLayout, ClassifierSpec, FastTextClassifier, TextClassifier

    from .conftest import write_jsonl
    from .test_quality_classifier import TEXTS, _checkpoint, _fasttext_model, _nvidia_layout

    values = {"Low": 0.0, "Medium": 5.0, "High": 10.0}
    classes = ["--set=quality.classifier.head=classes",
               "--set=quality.classifier.class_values={Low: 0, Medium: 5, High: 10}"]
    checkpoint = _checkpoint(tmp_path / "classes", "classes")
    backbone, nvidia, _, _ = _nvidia_layout(tmp_path / "nvidia")
    fasttext_model, _ = _fasttext_model(tmp_path / "fasttext")
    formats = {
        "transformers": ([f"--set=quality.classifier.path={checkpoint}", *classes],
                         lambda: TextClassifier(checkpoint, ClassifierSpec("classes", class_values=values), 32, "cpu")),
        "backbone_head": ([f"--set=quality.classifier.path={nvidia}", "--set=quality.classifier.format=backbone_head",
                           f"--set=quality.classifier.backbone={backbone}", *classes],
                          lambda: TextClassifier(nvidia, ClassifierSpec("classes", class_values=values), 32, "cpu",
                                                 layout=BackboneLayout(str(backbone)))),
        "fasttext": ([f"--set=quality.classifier.path={fasttext_model}", "--set=quality.classifier.format=fasttext",
                      "--set=quality.classifier.positive_label=__label__hq"],
                     lambda: FastTextClassifier(fasttext_model, "__label__hq")),
    }
    write_jsonl(tmp_path / "data" / "docs.jsonl",
                [{"text": t, "domain": "d", "diversity_score": 0.5, "quality_score": 0} for t in TEXTS])
    common = ["--config", str(REPO / "conf" / "synthetic.yaml"), f"--set=ingest.sources=[{tmp_path}/data/*.jsonl]",
              f"--set=tables.warehouse={tmp_path}/jvm", *[f"--set={o}" for o in JVM]]
    # One JVM for every format: each quality run writes its own warehouse's table.
    commands = [["ingest", *common]]
    commands += [["quality", *common, "--set=quality.method=classifier", "--set=quality.max_tokens=32", *settings,
                  f"--set=tables.warehouse={tmp_path}/wh-{name}"] for name, (settings, _) in formats.items()]
    for name in formats:
        (tmp_path / f"wh-{name}").mkdir()
        (tmp_path / f"wh-{name}" / "documents").symlink_to(tmp_path / "jvm" / "documents")
    result = run_sequence(commands, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    documents = pd.read_parquet(tmp_path / "jvm" / "documents")[["doc_id", "text"]]
    for name, (settings, direct) in formats.items():
        scored = pd.read_parquet(tmp_path / f"wh-{name}" / "quality").merge(documents, on="doc_id").set_index("text")
        expected = direct().score(TEXTS)
        assert scored.loc[TEXTS, "quality"].tolist() == expected.quality.tolist(), name
        np.testing.assert_allclose(scored.loc[TEXTS, "quality_expected"], expected.expected, rtol=1e-9, err_msg=name)


def test_domain_labels_on_jvm_local_equal_direct_labelling(tmp_path):
    """domain.method classifier end to end on JVM Spark: the executor-side code's labels, held out and reported too."""
    import numpy as np

    from samplemix_spark.models.classifier import ClassifierSpec, TextClassifier

    from .conftest import write_jsonl
    from .test_cli import samplemix
    from .test_domain_labels import CORPUS, _domain_checkpoint

    checkpoint = _domain_checkpoint(tmp_path / "classes")
    write_jsonl(tmp_path / "data" / "docs.jsonl", [{"text": t, "diversity_score": 0.5, "quality_score": 0}
                                                   for t in CORPUS])
    result = samplemix("run", "--config", str(REPO / "conf" / "synthetic.yaml"),
                       f"--set=ingest.sources=[{tmp_path}/data/*.jsonl]", f"--set=tables.warehouse={tmp_path}/jvm",
                       "--set=ingest.holdout_fraction=0.3", "--set=domain.method=classifier",
                       f"--set=domain.classifier.path={checkpoint}", "--set=domain.max_tokens=32",
                       *[f"--set={o}" for o in JVM], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    direct = TextClassifier(checkpoint, ClassifierSpec(), 32, "cpu")
    for table in ("documents", "holdout"):
        rows = pd.read_parquet(tmp_path / "jvm" / table)
        top = direct.top_labels(rows["text"].tolist())
        assert rows["domain"].tolist() == top.names, table
        if table == "documents":
            np.testing.assert_allclose(rows["domain_confidence"], top.confidence, rtol=1e-9)
            reported = pd.read_parquet(tmp_path / "jvm" / "report_domains")["domain"]
            assert sorted(reported) == sorted(set(top.names))


def test_perplexity_scores_and_q_on_jvm_local_equal_the_embedded_engine(spark, tmp_path):
    """The reference models train on the driver either way; JVM Spark's Python workers give the same bpb and q."""
    from samplemix_spark.mixing.weights import quality_view, scored_documents
    from samplemix_spark.pipeline import run_stage

    from .conftest import make_config, store_for, write_jsonl
    from .test_cli import samplemix
    from .test_perplexity import corpus

    records, _ = corpus()
    write_jsonl(tmp_path / "data" / "docs.jsonl", records)
    settings = {"reference": ["ref"], "preset": "test", "doc_bytes": 512, "buckets": 5}
    cfg = make_config(tmp_path / "embedded", [tmp_path / "data" / "docs.jsonl"],
                      quality={"method": "perplexity", "perplexity": settings})
    for stage in ("ingest", "quality", "diversity"):
        run_stage(spark, cfg, stage)
    store = store_for(spark, cfg)
    embedded = scored_documents(store, quality_view(cfg)).toPandas().set_index("doc_id")
    embedded_bpb = store.read("quality").toPandas().set_index("doc_id")["bpb"]
    sets = [f"--set=ingest.sources=[{tmp_path}/data/*.jsonl]", f"--set=tables.warehouse={tmp_path}/jvm",
            "--set=quality.method=perplexity", "--set=quality.perplexity.reference=[ref]",
            "--set=quality.perplexity.preset=test", "--set=quality.perplexity.doc_bytes=512",
            "--set=quality.perplexity.buckets=5", *[f"--set={o}" for o in JVM]]
    result = samplemix("run", "--config", str(REPO / "conf" / "synthetic.yaml"), *sets, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jvm_bpb = pd.read_parquet(tmp_path / "jvm" / "quality").set_index("doc_id")["bpb"]
    assert jvm_bpb.sort_index().tolist() == embedded_bpb.sort_index().tolist()
    weights = pd.read_parquet(tmp_path / "jvm" / "weights").set_index("doc_id")["q"]
    assert weights.sort_index().tolist() == embedded["q"].loc[weights.index].sort_index().tolist()


def test_domains_from_clusters_on_jvm_local_equal_the_embedded_engine(tmp_path):
    """domain.method clusters on a corpus without a domain field: the same labels and groups on both engines."""
    import numpy as np

    from .conftest import write_jsonl
    from .realtext import bbc_articles

    settings = ("quality.method=heuristic", "ingest.quality_column=null", "ingest.diversity_column=null",
                "ingest.holdout_fraction=0.2", "diversity.method=kmeans", "diversity.max_tokens=32", "diversity.k=6",
                "diversity.niter=10", "domain.method=clusters", "domain.max_domains=3")
    tables = {}
    for name, engine in (("embedded", ()), ("jvm", JVM)):
        write_jsonl(tmp_path / name / "data" / "docs.jsonl", [{"text": t} for t in bbc_articles(60)])
        result = run_pipeline_cli(tmp_path / name, *settings, *engine)
        assert result.returncode == 0, result.stderr[-3000:]
        warehouse = tmp_path / name / "wh"
        tables[name] = {t: DeltaTable(str(warehouse / t)).to_pandas() if name == "embedded"
                        else pd.read_parquet(warehouse / t) for t in ("documents", "holdout", "domain_groups")}
    for table, key in (("documents", "doc_id"), ("holdout", "doc_id"), ("domain_groups", "group_id")):
        embedded, jvm = _sorted(tables["embedded"][table], key), _sorted(tables["jvm"][table], key)
        assert embedded[key].tolist() == jvm[key].tolist() and embedded["domain"].tolist() == jvm["domain"].tolist()
    assert tables["embedded"]["documents"]["domain"].nunique() > 1
    groups = [np.stack(_sorted(tables[n]["domain_groups"], "group_id")["centroid"]) for n in ("embedded", "jvm")]
    np.testing.assert_allclose(groups[0], groups[1], atol=1e-6)
