"""Choosing apart from reporting: the held-out halves, and ``tune``'s choice under training noise.

The searches here are numpy simulations of known truth, run through the same
function ``samplemix tune`` calls (``tune.mark_choice``): candidates whose true
losses are equal must not be called worse than the chosen one beyond the
adjusted level, and a truly better one must be chosen and named likely best.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from samplemix_spark.evaluation import holdout as held
from samplemix_spark.evaluation import intervals
from samplemix_spark.evaluation.tune import DOC_COLUMNS, mark_choice
from samplemix_spark.hashing import HOLDOUT_ORDER, doc_key

DOMAINS = ["code", "news", "spam"]


def _held_out(rng: np.random.Generator, per_domain: int) -> pd.DataFrame:
    """Held-out documents: an id, a domain, a size and a difficulty (bits per byte) each."""
    rows = [(f"{d}-{i}", d) for d in DOMAINS for i in range(per_domain)]
    frame = pd.DataFrame(rows, columns=["doc_id", "domain"])
    size = np.maximum(50, rng.lognormal(6.5, 0.7, len(frame))).round()
    return frame.assign(bytes=size, rate=2.0 + rng.normal(0, 0.4, len(frame)))


def _search(rng: np.random.Generator, docs: pd.DataFrame, shifts: list[float], seeds: list[int],
            seed_sd: float = 0.02) -> pd.DataFrame:
    """``tune_docs`` rows: candidate i (alpha = i / 10) is worse by ``shifts[i]`` bpb; every proxy (candidate,
    seed) adds its own training shift N(0, seed_sd) on every byte and a little per-document noise."""
    frames = []
    for i, shift in enumerate(shifts):
        for seed in seeds:
            rate = docs["rate"] + shift + rng.normal(0, seed_sd) + rng.normal(0, 0.05, len(docs))
            frames.append(docs.assign(alpha=i / 10, tau=0.2, max_repeats=np.nan, seed=seed, bits=rate * docs["bytes"],
                                      preset="test", budget_bytes=1, holdout="h", fingerprint="f"))
    return pd.concat(frames, ignore_index=True)[DOC_COLUMNS]


def test_the_halves_alternate_in_hashed_order_within_each_domain():
    rng = np.random.default_rng(1)
    docs = _held_out(rng, 9).sample(frac=1.0, random_state=3)
    half = held.halves(docs)
    for domain, rows in docs.assign(half=half).groupby("domain"):
        ordered = rows.assign(key=[doc_key(HOLDOUT_ORDER, d) for d in rows["doc_id"]]).sort_values("key")
        assert ordered["half"].tolist() == ["select", "report"] * 4 + ["select"], domain
    # The per-step documents are a prefix of the same order, so they split as the whole does.
    prefix = docs.assign(half=half, key=[doc_key(HOLDOUT_ORDER, d) for d in docs["doc_id"]])
    prefix = prefix.sort_values("key").groupby("domain").head(4)
    assert (held.halves(prefix) == prefix["half"].to_numpy()).all()
    assert len(held.in_half(docs, "select")) + len(held.in_half(docs, "report")) == len(docs)
    assert held.in_half(docs, None) is docs
    with pytest.raises(ValueError, match="unknown held-out half 'train'"):
        held.in_half(docs, "train")


def test_equal_candidates_are_seldom_called_worse_than_the_chosen_one():
    """100 searches of 10 truly equal candidates, 2 seeds each, with training noise: the share of searches that
    call any candidate worse than the chosen one stays within 10% (nominal 5%)."""
    rng = np.random.default_rng(20261203)
    held_out = _held_out(rng, 30)
    searches, any_worse, chosen = 100, 0, []
    for _ in range(searches):
        _, summary = mark_choice(_search(rng, held_out, [0.0] * 10, [0, 1]), DOMAINS, samples=300)
        any_worse += bool((~summary["chosen"] & ~summary["tied"]).any())
        chosen.append(float(summary.loc[summary["chosen"], "alpha"].iat[0]))
        assert summary["p_best"].sum() == pytest.approx(1.0)
    assert any_worse / searches <= 0.10, any_worse / searches
    # Equal candidates: the choice is spread over them, not stuck on one.
    assert len(set(chosen)) >= 6


def test_one_seed_per_candidate_leaves_the_best_and_every_comparison_undetermined():
    """Far apart on the documents, but with one seed each nothing says how much of that is training luck."""
    rng = np.random.default_rng(11)
    _, summary = mark_choice(_search(rng, _held_out(rng, 30), [0.0, 0.3, 0.3], [0]), DOMAINS, samples=300)
    assert summary.loc[summary["chosen"], "alpha"].tolist() == [0.0]
    assert summary["p_best"].isna().all()
    others = summary[~summary["chosen"]]
    assert not summary["tied"].any() and others["vs_chosen"].str.startswith("undetermined").all()


def test_a_truly_better_candidate_is_chosen_likely_best_and_the_rest_worse():
    rng = np.random.default_rng(7)
    held_out = _held_out(rng, 40)
    docs = _search(rng, held_out, [0.0, 0.3, 0.3, 0.3], [0, 1, 2], seed_sd=0.01)
    marked, summary = mark_choice(docs, DOMAINS, samples=500)
    best = summary[summary["chosen"]].iloc[0]
    assert best["alpha"] == 0.0 and best["p_best"] > 0.99
    assert not summary["tied"].any()
    assert summary["vs_chosen"].str.startswith("worse").sum() == 3
    # Chosen on one half, reported on the other: the report figure is the report half's seed-mean macro.
    report = held.in_half(docs[docs["alpha"] == 0.0], "report")
    sums = report.groupby(["seed", "domain"])[["bits", "bytes"]].sum()
    expected = (sums["bits"] / sums["bytes"]).groupby("seed").mean().mean()
    assert best["report_bpb"] == pytest.approx(expected, rel=1e-12)
    assert best["select_docs"] + best["report_docs"] == len(held_out)
    assert set(marked.loc[marked["chosen"], "alpha"]) == {0.0}
    assert marked.loc[marked["chosen"], "p_best"].iat[0] == best["p_best"]


def test_fresh_seeds_confirm_the_choice_on_the_report_half():
    rng = np.random.default_rng(9)
    held_out = _held_out(rng, 30)
    search = _search(rng, held_out, [0.0, 0.3, 0.6], [0, 1])
    fresh = _search(rng, held_out, [0.0, 0.3, 0.6], [2, 3])
    fresh = fresh[fresh["alpha"] < 0.15]  # the chosen candidate and the runner-up only
    _, summary = mark_choice(pd.concat([search, fresh], ignore_index=True), DOMAINS, samples=400,
                             confirm_seeds=(2, 3))
    # The search figures use the search seeds only.
    assert (summary["seeds"] == 2).all()
    confirmed = summary.set_index("alpha")["confirmed"]
    assert confirmed[0.2] == "-" and "on seeds [2, 3]" in confirmed[0.1]
    assert "minus the runner-up: better" in confirmed[0.0]
    report = held.in_half(fresh, "report")
    sums = report.groupby(["alpha", "seed", "domain"])[["bits", "bytes"]].sum()
    macro = (sums["bits"] / sums["bytes"]).groupby(["alpha", "seed"]).mean().groupby("alpha").mean()
    difference = confirmed[0.0].split("minus the runner-up: better ")[1].split(" ")[0]
    assert float(difference) == pytest.approx(macro[0.0] - macro[0.1], abs=5e-5)


def test_the_comparison_level_holds_over_every_pair():
    assert intervals.comparisons_level(2) == pytest.approx(0.95)
    assert intervals.comparisons_level(10) == pytest.approx(1 - 0.05 / 45)
    assert intervals.comparisons_level(1) == pytest.approx(0.95)


def test_a_domain_with_one_held_out_document_is_refused_by_name():
    from samplemix_spark.errors import InputError

    docs = pd.DataFrame({"doc_id": ["a1", "a2", "b1"], "domain": ["a", "a", "b"]})
    assert len(held.in_half(docs, "select")) == 2
    with pytest.raises(InputError, match="held-out domains b have one scored document"):
        held.in_half(docs, "report")
