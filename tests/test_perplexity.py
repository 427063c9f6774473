"""quality.method: perplexity on a synthetic corpus whose documents are the reference text with known noise.

Answers known in advance: bits per byte rise and q falls with the share of
characters replaced by noise; reference documents, scored by the model that did
not train on them, score like clean text that neither model saw; a score does not
depend on its batch-mates; q's buckets hold equal shares of a sample and order
documents by bpb; a reference domain the corpus lacks fails in one line.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from samplemix_spark.errors import InputError
from samplemix_spark.mixing.weights import QualityView, perplexity_q, quality_view, scored_documents
from samplemix_spark.pipeline import make_step, run_stage

from .conftest import make_config, store_for, write_jsonl
from .ingest_cases import hashed

SUBJECTS = ["the river", "a farmer", "the glacier", "our council", "the delta", "a teacher"]
VERBS = ["carries", "plants", "feeds", "builds", "moves", "keeps"]
OBJECTS = ["silt to the sea", "wheat after the flood", "water in summer", "a school by the canal",
           "the market road", "records of the harvest"]
NOISE = [0.0, 0.15, 0.4, 0.8]


def _sentence_text(rng, n: int) -> str:
    return " ".join(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}." for _ in range(n))


def _noisy(text: str, share: float, rng) -> str:
    chars = np.array(list(text))
    hit = rng.random(len(chars)) < share
    chars[hit] = rng.choice(list("qzxjkvw#%&@0123456789"), hit.sum())
    return "".join(chars)


def corpus() -> tuple[list[dict], dict]:
    rng = np.random.default_rng(0)
    records, noise = [], {}
    for i in range(160):
        records.append({"text": _sentence_text(rng, 12) + f" ({i})", "domain": "ref"})
    for i in range(120):
        share = NOISE[i % len(NOISE)]
        text = _noisy(_sentence_text(rng, 12), share, rng) + f" ({i})"
        records.append({"text": text, "domain": "web"})
        noise[hashed(text)] = share
    for record in records:
        record.update(quality_score=1, diversity_score=0.5)
    return records, noise


@pytest.fixture(scope="module")
def scored(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("perplexity")
    records, noise = corpus()
    source = write_jsonl(root / "docs.jsonl", records)
    cfg = make_config(root / "wh", [source], quality={"method": "perplexity", "perplexity": {
        "reference": ["ref"], "preset": "test", "doc_bytes": 512, "buckets": 5}})
    for stage in ("ingest", "quality", "diversity"):
        run_stage(spark, cfg, stage)
    return cfg, noise


def test_q_falls_with_noise_and_reference_documents_score_as_unseen_clean_text(spark, scored):
    cfg, noise = scored
    store = store_for(spark, cfg)
    quality = store.read("quality").toPandas().set_index("doc_id")
    q = scored_documents(store, quality_view(cfg)).toPandas().set_index("doc_id")["q"]
    web = pd.DataFrame({"noise": pd.Series(noise)}).join(quality["bpb"]).join(q)
    by_noise = web.groupby("noise")[["bpb", "q"]].mean()
    assert by_noise["bpb"].is_monotonic_increasing and by_noise["bpb"].diff().dropna().gt(0).all()
    assert by_noise["q"].is_monotonic_decreasing and by_noise["q"].iloc[0] > by_noise["q"].iloc[-1]
    reference = quality.drop(index=list(noise))["bpb"]
    gap = by_noise["bpb"].iloc[-1] - by_noise["bpb"].iloc[0]
    assert abs(reference.mean() - by_noise["bpb"].iloc[0]) < 0.25 * gap


def test_a_score_does_not_depend_on_its_batch_mates_and_a_rerun_gives_the_same(spark, scored):
    from samplemix_spark.models.byte_lm import PRESETS
    from samplemix_spark.quality.perplexity import MODELS_TABLE, _load_models, bits_per_byte
    from samplemix_spark.tables.files import snapshot_files

    cfg, _ = scored
    store = store_for(spark, cfg)
    models = _load_models(tuple(snapshot_files(store, MODELS_TABLE)), "test", "cpu")
    rows = store.read("documents").join(store.read("quality"), "doc_id").toPandas().head(40)
    halves = [int(h) for h in np.random.default_rng(1).integers(0, 2, len(rows))]
    starts = np.random.default_rng(2).random(len(rows)).tolist()
    texts, context = rows["text"].tolist(), PRESETS["test"].context
    together = bits_per_byte(models, texts, halves, starts, context, 512)
    alone = [bits_per_byte(models, [t], [h], [u], context, 512)[0] for t, h, u in zip(texts, halves, starts)]
    assert together.tolist() == alone
    before = store.read("quality").toPandas().sort_values("doc_id")["bpb"].tolist()
    make_step("quality", cfg).run(spark, store)
    assert store.read("quality").toPandas().sort_values("doc_id")["bpb"].tolist() == before


def test_buckets_hold_equal_shares_and_order_documents_by_bpb(spark):
    rng = np.random.default_rng(4)
    bpb = np.round(rng.gamma(4.0, 0.5, 1000), 2)  # rounded: ties
    frame = spark.createDataFrame(pd.DataFrame({"doc_id": [f"d{i}" for i in range(1000)], "bpb": bpb}))
    q = perplexity_q(frame, QualityView(buckets=11, sample=10_000), "v2").toPandas().set_index("doc_id")
    q = q.loc[[f"d{i}" for i in range(1000)]]
    order = np.argsort(bpb, kind="stable")
    assert np.all(np.diff(q["quality_expected"].to_numpy()[order]) <= 0)  # lower bpb, higher q
    assert q.groupby(bpb)["quality"].nunique().max() == 1                 # ties share a bucket
    shares = q["quality"].value_counts()
    assert sorted(shares.index) == list(range(11)) and shares.max() - shares.min() <= 40  # about 1000 / 11 each


def test_an_offset_between_the_two_models_moves_no_document_across_a_bucket(spark):
    rng = np.random.default_rng(5)
    n = 1000
    frame = pd.DataFrame({"doc_id": [f"d{i}" for i in range(n)], "bpb": rng.gamma(4.0, 0.5, n),
                          "half": rng.integers(0, 2, n)})
    view = QualityView(buckets=11, sample=10_000)
    q = perplexity_q(spark.createDataFrame(frame), view, "v2").toPandas().set_index("doc_id").loc[frame["doc_id"]]
    offset = frame.assign(bpb=frame["bpb"] + 0.75 * frame["half"])  # model 0 scores 0.75 bits per byte higher
    shifted = perplexity_q(spark.createDataFrame(offset), view, "v2").toPandas().set_index("doc_id")
    assert shifted.loc[frame["doc_id"], "quality"].tolist() == q["quality"].tolist()
    for _, group in q.groupby(frame.set_index("doc_id")["half"]):  # each half spans every bucket
        assert sorted(group["quality"].unique()) == list(range(11))
    cut_as_one = perplexity_q(spark.createDataFrame(offset.drop(columns="half")), view, "v2").toPandas()
    assert (cut_as_one.set_index("doc_id").loc[frame["doc_id"], "quality"] != q["quality"]).mean() > 0.3


def test_halves_follow_the_text_and_windows_are_placed_by_doc_id(spark):
    from samplemix_spark.quality.perplexity import half_column, scored_window, window_column

    texts = [f"text number {i} " * 40 for i in range(40)]
    frame = spark.createDataFrame(pd.DataFrame({"doc_id": [f"a{i}" for i in range(40)] + [f"b{i}" for i in range(40)],
                                                "text": texts + texts}))
    got = frame.select("doc_id", half_column(0, "v2").alias("half"), window_column(0, "v2").alias("u")).toPandas()
    got = got.set_index("doc_id")
    # One text under two ids is in one half: the model that scores it never trained on it.
    assert got.loc[[f"a{i}" for i in range(40)], "half"].tolist() == got.loc[[f"b{i}" for i in range(40)],
                                                                                "half"].tolist()
    assert 0 < got["half"].mean() < 1 and got["u"].between(0, 1).all()
    text = "".join(chr(ord("a") + i % 26) for i in range(3000))
    assert scored_window(text, 0.0, 1024) == text[:1024].encode() and scored_window(text, 1.0, 1024) == \
        text[-1024:].encode()
    assert scored_window(text, 0.5, 1024) == text[988:2012].encode() and scored_window("short", 0.7, 1024) == b"short"


def test_a_reference_domain_the_corpus_lacks_fails_in_one_line(spark, tmp_path):
    source = write_jsonl(tmp_path / "docs.jsonl", [{"text": f"text number {i}", "domain": "web", "quality_score": 1,
                                                     "diversity_score": 0.5} for i in range(8)])
    cfg = make_config(tmp_path / "wh", [source], quality={"method": "perplexity", "perplexity": {
        "reference": ["news"], "preset": "test"}})
    run_stage(spark, cfg, "ingest")
    with pytest.raises(InputError, match="quality.perplexity.reference names news, which the documents do not "
                                         "hold; domains: web"):
        run_stage(spark, cfg, "quality")


def test_reference_text_from_files_outside_the_corpus(spark, tmp_path):
    records, noise = corpus()
    reference = write_jsonl(tmp_path / "trusted" / "ref.jsonl", [{"text": r["text"]} for r in records
                                                                   if r["domain"] == "ref"])
    source = write_jsonl(tmp_path / "docs.jsonl", [r for r in records if r["domain"] != "ref"])
    cfg = make_config(tmp_path / "wh", [source], quality={"method": "perplexity", "perplexity": {
        "sources": [str(reference)], "preset": "test", "doc_bytes": 512, "buckets": 5}})
    for stage in ("ingest", "quality", "diversity"):
        run_stage(spark, cfg, stage)
    store = store_for(spark, cfg)
    q = scored_documents(store, quality_view(cfg)).toPandas().set_index("doc_id")["q"]
    by_noise = pd.DataFrame({"noise": pd.Series(noise)}).join(q).groupby("noise")["q"].mean()
    assert by_noise.is_monotonic_decreasing and by_noise.iloc[0] > by_noise.iloc[-1]
