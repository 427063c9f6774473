"""Figures of a proxy evaluation, drawn from the ``proxy_eval`` table (driver side).

Each function returns a ``draw(ax)`` callable for ``report.html.save_figure``, so
``samplemix evaluate``, ``report --html`` and ``compare`` draw the same figures.
"""

from __future__ import annotations

import pandas as pd

MACRO = "_all"


def learning_curves(proxy_eval: pd.DataFrame):
    """Macro bits per byte against bytes seen, one line per run (seed mean) with the seed range shaded."""
    macro = proxy_eval[proxy_eval["domain"] == MACRO]

    def draw(ax):
        for run, rows in macro.groupby("run", sort=True):
            by_step = rows.groupby("tokens_seen")["bpb"]
            x = by_step.mean().index
            ax.plot(x, by_step.mean(), marker=".", label=run)
            ax.fill_between(x, by_step.min(), by_step.max(), alpha=0.2)
        ax.set_xlabel("training bytes seen")
        ax.set_ylabel("held-out bits per byte (macro)")
        ax.set_title("Proxy learning curves (mean over seeds, range shaded)")
        ax.legend(fontsize=7)
    return draw


def final_domain_bars(proxy_eval: pd.DataFrame):
    """Final-step bits per byte per held-out domain and run (seed mean, seed std as error bars)."""
    last = proxy_eval[proxy_eval["step"] == proxy_eval.groupby("run")["step"].transform("max")]
    grouped = last.groupby(["domain", "run"])["bpb"]
    means, stds = grouped.mean().unstack("run"), grouped.std(ddof=1).unstack("run").fillna(0.0)

    def draw(ax):
        means.plot.bar(ax=ax, yerr=stds, capsize=2, rot=0)
        ax.set_ylabel("held-out bits per byte")
        ax.set_title("Final held-out bits per byte per domain")
        ax.legend(fontsize=7)
    return draw
