r"""``quality.method: heuristic``: a 0-10 quality score from text statistics.

Native Spark expressions only (no Python UDF), so it runs at engine speed and
gives the same score on every engine. Each rule awards points; the score is
their sum. The rules follow well-known web-text filters (Gopher, C4):

| signal | rule | points |
|---|---|---|
| length | >= 50 words: 1; >= 200 words: 1 more | 2 |
| mean word length | between 3 and 10 characters | 1 |
| alphabetic share | >= 75% of non-space characters are letters | 1 |
| lines ending in punctuation | >= 50% of non-blank lines end in . ! ? " ' or ) | 1 |
| repeated lines | <= 10% of non-blank lines repeat an earlier line | 1 |
| symbol-to-word ratio | <= 0.10 symbols (not letters, digits, spaces, common punctuation) per word | 1 |
| URL and markup density | <= 0.02 URLs or HTML tags per word | 1 |
| stop-word share | >= 20% of words are English stop words: 1; >= 30%: 1 more | 2 |

Natural prose scores 8-10; navigation menus, keyword lists, spam and markup
dumps lose points on several rules at once.

Everything is a native Spark expression except the letter and symbol counts.
Whether a character is a letter depends on the Unicode version of the engine's
regex library (``\p{L}`` on Java 17 does not know letters added in Unicode 14,
the embedded engine's does), so those two counts come from a small pandas UDF
that classifies each distinct character of a text once with Python's
``unicodedata``: the same interpreter, hence the same answer, on every engine.
Whitespace is the explicit Unicode White_Space class below, not ``\s`` (ASCII
only on the JVM).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from samplemix_spark.engine.progress import Progress
from samplemix_spark.tables import TableStore
from samplemix_spark.tables.per_document import PerDocumentStep

STOP_WORDS = (
    "a", "about", "after", "all", "also", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can",
    "could", "for", "from", "had", "has", "have", "he", "her", "his", "i", "if", "in", "into", "is", "it",
    "its", "more", "not", "of", "on", "one", "or", "our", "she", "so", "some", "than", "that", "the",
    "their", "them", "then", "there", "these", "they", "this", "to", "was", "we", "were", "what", "when",
    "which", "who", "will", "with", "would", "you", "your",
)


@dataclass(frozen=True)
class Rule:
    """One point when ``low <= signal <= high`` (an absent bound is open)."""

    signal: str
    low: Optional[float] = None
    high: Optional[float] = None


RULES = (
    Rule("n_words", low=50),
    Rule("n_words", low=200),
    Rule("mean_word_length", low=3.0, high=10.0),
    Rule("alpha_share", low=0.75),
    Rule("punct_line_share", low=0.5),
    Rule("repeated_line_share", high=0.10),
    Rule("symbol_word_ratio", high=0.10),
    Rule("url_markup_density", high=0.02),
    Rule("stop_word_share", low=0.20),
    Rule("stop_word_share", low=0.30),
)


# Unicode White_Space, spelled out so that every regex engine reads the same class.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_WS = f"[{WHITESPACE}]"
_WHITESPACE_CHARS = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
                              + "".join(chr(c) for c in range(0x2000, 0x200B)))
_ALLOWED_PUNCTUATION = frozenset(".,;:!?'\"()-")


@lru_cache(maxsize=65536)
def _char_class(ch: str) -> int:
    """1 for a letter, 2 for a symbol (not a letter, number, space or common punctuation), else 0."""
    category = unicodedata.category(ch)
    if category[0] == "L":
        return 1
    if category[0] == "N" or ch in _WHITESPACE_CHARS or ch in _ALLOWED_PUNCTUATION:
        return 0
    return 2


def letter_and_symbol_counts(text: Optional[str]) -> tuple[int, int]:
    """(letters, symbols) of a text: each distinct character is classified once."""
    letters = symbols = 0
    for ch, n in Counter(text or "").items():
        kind = _char_class(ch)
        letters += n if kind == 1 else 0
        symbols += n if kind == 2 else 0
    return letters, symbols


def _letters_and_symbols(text: Column) -> Column:
    @F.pandas_udf("letters long, symbols long")
    def counts(texts: pd.Series) -> pd.DataFrame:
        return pd.DataFrame([letter_and_symbol_counts(t) for t in texts], columns=["letters", "symbols"],
                            dtype="int64")

    return counts(text)


def _ratio(numerator: Column, denominator: Column) -> Column:
    return F.when(denominator > 0, numerator / denominator).otherwise(F.lit(0.0))


def text_signals(text: Column) -> dict[str, Column]:
    """The named signals of the rule table, as column expressions over ``text``."""
    words = F.filter(F.split(text, f"{_WS}+"), lambda w: w != "")
    lines = F.filter(F.split(text, "\n"), lambda line: F.trim(line) != "")
    n_words = F.size(words)
    n_lines = F.size(lines)
    non_space = F.length(F.regexp_replace(text, _WS, ""))
    counts = _letters_and_symbols(text)
    letters, symbols = counts["letters"], counts["symbols"]
    urls = F.size(F.split(text, r"https?://|www\.")) - 1
    tags = F.size(F.split(text, r"</?[A-Za-z][^>]{0,200}>")) - 1
    punct_lines = F.size(F.filter(lines, lambda line: F.rtrim(line).rlike(r"[.!?\"')]$")))
    # Stop words are ASCII: dropping a word's ASCII non-letters is enough, and reads alike everywhere.
    stop_words = F.size(F.filter(words, lambda w: F.lower(F.regexp_replace(w, r"[\x00-@\[-`{-\x7f]", ""))
                                 .isin(*STOP_WORDS)))
    return {
        "n_words": n_words,
        "mean_word_length": _ratio(non_space, n_words),
        "alpha_share": _ratio(letters, non_space),
        "punct_line_share": _ratio(punct_lines, n_lines),
        "repeated_line_share": _ratio(n_lines - F.size(F.array_distinct(lines)), n_lines),
        "symbol_word_ratio": _ratio(symbols, n_words),
        "url_markup_density": _ratio(urls + tags, n_words),
        "stop_word_share": _ratio(stop_words, n_words),
    }


def _point(rule: Rule) -> Column:
    column = F.col(rule.signal)
    ok = F.lit(True)
    if rule.low is not None:
        ok = ok & (column >= F.lit(rule.low))
    if rule.high is not None:
        ok = ok & (column <= F.lit(rule.high))
    return F.when(ok, 1).otherwise(0)


def heuristic_score() -> Column:
    """Sum of rule points over the signal columns (see the module's rule table)."""
    points = [_point(rule) for rule in RULES]
    return sum(points[1:], points[0]).cast("int")


def score_frame(documents: DataFrame) -> DataFrame:
    """doc_id, quality (0-10), method and the signals behind the score."""
    signals = text_signals(F.col("text"))
    with_signals = documents.select("doc_id", *[column.alias(name) for name, column in signals.items()])
    return with_signals.select("doc_id", heuristic_score().alias("quality"), F.lit("heuristic").alias("method"),
                               *signals)


class HeuristicQuality(PerDocumentStep):
    """Write the quality table from text statistics."""

    name = "quality"
    source, output = "documents", "quality"

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def transform(self, spark: SparkSession, store: TableStore, rows: DataFrame,
                  progress: Optional[Progress] = None) -> DataFrame:
        return score_frame(rows)
