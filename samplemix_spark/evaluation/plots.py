"""Figures: one place that draws and embeds them, for evaluation and for the report pages (driver side).

``save_figure`` draws a ``draw(ax)`` callable to a PNG and returns an <img> that
carries it. The proxy-evaluation figures are drawn from the ``proxy_eval``
table, so ``samplemix evaluate``, ``report --html`` and ``compare`` draw the same.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pandas as pd

MACRO = "_all"


def save_figure(path: Path, draw) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8))
    draw(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return image_tag(path)


def image_tag(path: Path) -> str:
    """An <img> that carries the PNG itself, so the page needs no files beside it."""
    return f'<img alt="{path.stem}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'


def learning_curves(proxy_eval: pd.DataFrame):
    """Macro bits per byte on the step subset against bytes seen, one line per run (seed mean, range shaded)."""
    macro = proxy_eval[(proxy_eval["domain"] == MACRO) & (proxy_eval["scope"] == "subset")]

    def draw(ax):
        for run, rows in macro.groupby("run", sort=True):
            by_step = rows.groupby("tokens_seen")["bpb"]
            x = by_step.mean().index
            ax.plot(x, by_step.mean(), marker=".", label=run)
            ax.fill_between(x, by_step.min(), by_step.max(), alpha=0.2)
        ax.set_xlabel("training bytes seen")
        ax.set_ylabel("held-out bits per byte (macro)")
        ax.set_title("Proxy learning curves (per-step documents; seed mean, range shaded)", fontsize=10)
        ax.legend(fontsize=7)
    return draw


def final_domain_bars(proxy_eval: pd.DataFrame, reference: str | None = None):
    """Final bits per byte per held-out domain and run on the report half, with the 95% document interval.

    The value axis spans the data, not 0 upwards, so differences of a few hundredths stay visible;
    the ``reference`` run (natural proportions) is also drawn as a dashed line across each domain.
    """
    last = proxy_eval[proxy_eval["scope"] == "report"]
    grouped = last.groupby(["domain", "run"])
    means = grouped["bpb"].mean().unstack("run")
    low, high = grouped["bpb_lo"].mean().unstack("run"), grouped["bpb_hi"].mean().unstack("run")
    below = (means - low).fillna(0.0)
    above = (high - means).fillna(0.0)
    errors = [[below[run].to_numpy(), above[run].to_numpy()] for run in means.columns]
    bottom, top = float(np.nanmin((means - below).to_numpy())), float(np.nanmax((means + above).to_numpy()))
    margin = 0.1 * (top - bottom) or 0.05

    def draw(ax):
        means.plot.bar(ax=ax, yerr=errors, capsize=2, rot=0)
        ax.set_ylim(bottom - margin, top + margin)
        if reference in means.columns:
            for i, value in enumerate(means[reference]):
                ax.hlines(value, i - 0.45, i + 0.45, colors="black", linestyles="dashed", linewidth=1,
                          label=f"{reference} (reference)" if i == 0 else None)
        ax.set_xlabel("held-out domain (_all: macro mean)")
        ax.set_ylabel("held-out bits per byte (axis not from 0)")
        ax.set_title("Final held-out bits per byte per domain (95% interval over documents)", fontsize=10)
        ax.legend(fontsize=7)
    return draw
