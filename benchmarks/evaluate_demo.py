"""Proxy evaluation of the methods on the quick-start corpus: the table in docs/evaluation.md.

    .venv/bin/samplemix demo-data && .venv/bin/samplemix run --config conf/local.yaml
    .venv/bin/python benchmarks/evaluate_demo.py --seeds 0 1 2     # CPU preset: about 35 min on 2 cores
    .venv/bin/python benchmarks/evaluate_demo.py --preset gpu       # on a GPU machine

From the quick start's scored documents (``warehouse``), mixes each method into
``out/evaluate_demo/<method>`` with the same token budget (the source tokens,
``budget_mode: tokens``), then runs ``samplemix evaluate`` on all of them: every
run's proxies get the same byte budget, model and optimiser. Prints the summary
and writes ``proxy_eval``, ``proxy_eval_docs`` and ``proxy_eval_step_docs`` into
``warehouse`` and the figures under the out folder.

``bimix`` runs its own proxy swarm first (``evaluation.bimix_swarm``, seed
``--swarm-seeds``), which writes ``bimix_observations`` and ``bimix_fit`` into
``warehouse``. The SampleMix rows over alpha are ``samplemix tune``'s grid: a
candidate's proxies train on the same bytes as its written output's.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from samplemix_spark.config import build_config, load_config  # noqa: E402
from samplemix_spark.engine import build_session  # noqa: E402
from samplemix_spark.evaluation.evaluate import Evaluation, evaluate, summarise  # noqa: E402
from samplemix_spark.evaluation.mix_stage import mix_step  # noqa: E402
from samplemix_spark.tables import TableStore  # noqa: E402

METHODS = {
    "natural": {"method": "domain"},
    "entropy": {"method": "domain", "domain_weights": {"source": "entropy"}},
    "quality_threshold": {"method": "domain", "domain_weights": {"source": "quality_threshold", "quality_cut": 6}},
    "bimix": {"method": "domain", "domain_weights": {"source": "bimix"}},
    **{f"samplemix_a{alpha}": {"alpha": alpha, "tau": 0.2} for alpha in (0.0, 0.5, 0.8, 1.0)},
}


# The macro average over every held-out domain, and over the domains a user would want
# a model to learn (spam and raw mail left out, as evaluate.domains allows).
VIEWS = {"macro over all held-out domains": None, "macro over code, news, speeches": ["code", "news", "speeches"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "conf" / "local.yaml"))
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--swarm-seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--out", default="out/evaluate_demo")
    parser.add_argument("--summary-only", action="store_true",
                        help="print the summaries from the stored evaluation without mixing or training")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    cfg = load_config(args.config, [f"evaluate.preset={args.preset}", f"evaluate.seeds={args.seeds}",
                                    f"evaluate.out={args.out}/results"])
    spark = build_session(cfg.engine)
    scored = TableStore(spark, cfg.tables)
    warehouses = []
    for name, settings in ({} if args.summary_only else METHODS).items():
        mixing = build_config({"mixing": {**dataclasses.asdict(cfg.mixing), "budget_mode": "tokens",
                                          "method": "samplemix", "domain_weights": {}, **settings}}).mixing
        seeds = args.swarm_seeds if name == "bimix" else args.seeds
        variant = dataclasses.replace(cfg, mixing=mixing, evaluate=dataclasses.replace(cfg.evaluate, seeds=seeds),
                                      tables=dataclasses.replace(cfg.tables, warehouse=f"{args.out}/{name}"))
        mix_step(variant).run(spark, TableStore(spark, variant.tables), inputs=scored)
        warehouses.append(variant.tables.warehouse)
    if not args.summary_only:
        evaluate(spark, cfg, warehouses, list(METHODS), reference=False)
    evaluation = Evaluation.read(scored)
    if evaluation is None:
        raise SystemExit(f"no per-document proxy evaluation in {cfg.tables.warehouse}: run without --summary-only")
    for title, domains in VIEWS.items():
        summary = summarise(evaluation, cfg.evaluate.bootstrap, cfg.evaluate.bootstrap_seed, domains)
        print(f"\n{title}\n" + summary.to_string(float_format=lambda v: f"{v:.4f}"))
    spark.stop()


if __name__ == "__main__":
    main()
