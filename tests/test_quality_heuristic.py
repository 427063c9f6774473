"""Heuristic quality: native-expression signals and the ordering of real text."""

from __future__ import annotations

import pandas as pd
import pytest
from pyspark.sql import functions as F

from samplemix_spark.quality.heuristic import RULES, score_frame, text_signals

from .realtext import ENCYCLOPEDIC, SPAM, bbc_articles, degrade


def _score(spark, texts: list[str]) -> pd.DataFrame:
    frame = spark.createDataFrame(pd.DataFrame({"doc_id": [str(i) for i in range(len(texts))], "text": texts}))
    return score_frame(frame).toPandas().set_index("doc_id").loc[[str(i) for i in range(len(texts))]]


def test_rules_give_at_most_ten_points():
    assert len(RULES) == 10


def test_signals_on_a_hand_checked_text(spark):
    text = "The cat sat on the mat.\nThe cat sat on the mat.\nVisit http://x.example now\n<b>bold</b> ###"
    frame = spark.createDataFrame(pd.DataFrame({"text": [text]}))
    row = frame.select(*[c.alias(n) for n, c in text_signals(F.col("text")).items()]).collect()[0]
    assert row.n_words == 17
    assert row.punct_line_share == pytest.approx(2 / 4)
    assert row.repeated_line_share == pytest.approx(1 / 4)
    assert row.url_markup_density == pytest.approx(3 / 17)  # one URL, two tags
    assert row.stop_word_share == pytest.approx(6 / 17)  # the, on, the (x2 lines)
    assert row.symbol_word_ratio == pytest.approx(10 / 17)  # "//" in the URL, "<>", "</>", "###"


def test_encyclopedic_and_news_text_outscore_spam_and_boilerplate(spark):
    good = ENCYCLOPEDIC + bbc_articles(20)
    bad = SPAM + [degrade(article, i) for i, article in enumerate(bbc_articles(9))]
    scores = _score(spark, good + bad)["quality"].tolist()
    good_scores, bad_scores = scores[:len(good)], scores[len(good):]
    assert min(good_scores) > max(bad_scores), (good_scores, bad_scores)
    assert all(0 <= s <= 10 for s in scores)
