"""How far the cpu proxy preset's ranking of mixtures agrees with a larger reference proxy's: docs/evaluation.md.

    .venv/bin/samplemix demo-data && .venv/bin/samplemix run --config conf/local.yaml
    .venv/bin/python benchmarks/proxy_fidelity.py        # cpu x 2 seeds, reference x 2 seeds: about 2.5 h on 2 cores
    .venv/bin/python benchmarks/proxy_fidelity.py --reference-seeds 0   # about 70 min; no reference pair verdicts

Ranks the demo study's mixtures (``_study.METHODS``: natural proportions,
entropy weights, the quality threshold, SampleMix at alpha 0, 0.5, 0.8 and 1,
and BiMix when its swarm is stored in ``bimix_observations``) with two proxy
presets on the same held-out documents: the small one users run (``cpu``, two
seeds) and a reference (``reference``: 9.5x the parameters, 2x the bytes, two
seeds by default; with one, its pair verdicts are undetermined). Prints the
plan first (proxies, bytes, stored, expected time from bytes/s measured here),
then per mixture each preset's macro bits per byte and rank, Spearman's rho
between the rankings with a document-bootstrap interval and a mixture-bootstrap
one, rho within the domain-level and the SampleMix mixtures, and the pairs: of
the pairs the reference separates beyond its paired interval, how many the
small preset orders the same way, and how many it separates itself.

Resumable per proxy: the proxies are stored in ``warehouse/proxy_eval_curves``
and shared with ``evaluate_demo.py`` (whose cpu seeds 0 and 1 are these), so a
killed run trains only what is missing. Tables go to ``<out>/proxy_fidelity/``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from _study import METHODS, configure_logging, mix_methods, study_arguments, with_evaluate

from samplemix_spark.config import load_config
from samplemix_spark.engine import build_session
from samplemix_spark.evaluation import fidelity, intervals, proxy_cache
from samplemix_spark.evaluation.evaluate import executor, plan, score_runs
from samplemix_spark.tables import TableStore


def group(name: str) -> str:
    """The group of mixtures a run belongs to, for rho within groups."""
    return "samplemix" if name.startswith("samplemix_a") else "domain-level"


def kind(a: str, b: str) -> str:
    """What a pair's two mixtures differ in, for reading the pairs table."""
    alphas = [name.startswith("samplemix_a") for name in (a, b)]
    if all(alphas):
        return "alpha"
    return "domain-level methods" if not any(alphas) else "a domain-level method vs samplemix"


def print_plan(spark, presets: dict, runs) -> dict:
    """Proxies, bytes, how many are stored and the expected time, for every preset, before any training;
    returns each preset's plan for ``score_runs``."""
    plans = {}
    for label, cfg in presets.items():
        planned = plans[label] = plan(cfg, runs)
        todo = proxy_cache.missing(proxy_cache.stored(TableStore(spark, cfg.tables)), planned.jobs, planned.prints)
        print(f"plan: {label} preset {cfg.evaluate.preset}, seeds {cfg.evaluate.seeds}: "
              + proxy_cache.plan_line("fidelity", len(planned.jobs), todo, executor(cfg)).split(": ", 1)[1],
              flush=True)
    return plans


def report(result: fidelity.Fidelity, presets: dict) -> str:
    small, ref = (f"{label} ({cfg.evaluate.preset}, seeds {cfg.evaluate.seeds})" for label, cfg in presets.items())
    separated = result.separated()
    header = (f"Held-out macro bits per byte over {result.n_docs} documents, 95% intervals over documents and "
              f"seeds (seed variance pooled over the runs); small = {small}, reference = {ref}")
    within = "; ".join(f"{group} {fidelity.rho_text(value)}" for group, value in result.within.items())
    rho = (f"\nSpearman's rho between the rankings over {len(result.runs)} mixtures: {result.rho_text()}"
           f"\nrho within each group of mixtures: {within or 'no group of three or more'}")
    agreement = (f"pairs the reference separates: {len(separated)} of {len(result.pairs)}; the small preset orders "
                 f"{int(separated['same_order'].sum())} of them the same way ({result.same_order_share():.0%}) and "
                 f"separates {int((separated['small_word'] == separated['reference_word']).sum())} the same way "
                 f"itself ({result.resolved_share():.0%}); of all {len(result.pairs)} pairs it orders "
                 f"{int(result.pairs['same_order'].sum())} as the reference's estimates do and separates "
                 f"{int(fidelity.separates(result.pairs['small_word']).sum())}")
    lines = [header, result.runs.to_string(index=False, float_format=lambda v: f"{v:.4f}"), rho, agreement]
    pairs = result.pairs.assign(kind=[kind(a, b) for a, b in zip(result.pairs["run_a"], result.pairs["run_b"])])
    by_kind = pairs.groupby("kind").apply(lambda g: pd.Series({
        "pairs": len(g), "reference_separates": int(fidelity.separates(g["reference_word"]).sum()),
        "small_same_order": int((fidelity.separates(g["reference_word"]) & g["same_order"]).sum()),
        "small_separates_same_way": int((fidelity.separates(g["reference_word"])
                                         & (g["small_word"] == g["reference_word"])).sum()),
        "small_separates": int(fidelity.separates(g["small_word"]).sum()),
        "same_order_of_estimates": int(g["same_order"].sum())}), include_groups=False)
    lines += ["\nby what the pair differs in\n" + by_kind.to_string(),
              "\npairs (a minus b, macro bpb; negative: a is better)\n"
              + pairs.to_string(index=False, float_format=lambda v: f"{v:+.4f}")]
    return "\n".join(lines)


def main() -> None:
    parser = study_arguments(__doc__.splitlines()[0], METHODS)
    parser.add_argument("--small", default="cpu", help="the preset whose ranking is judged")
    parser.add_argument("--small-seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--reference", default="reference", help="the larger preset it is judged against")
    parser.add_argument("--reference-seeds", nargs="+", type=int, default=[0, 1],
                        help="two or more: with one seed per run no pair verdict is better or worse (undetermined)")
    parser.add_argument("--reference-budget", type=int, default=0,
                        help="bytes per reference proxy (default: the preset's own)")
    args = parser.parse_args()
    configure_logging()
    cfg = load_config(args.config, args.overrides)
    spark = build_session(cfg.engine)
    store = TableStore(spark, cfg.tables)
    methods = [m for m in args.methods if m != "bimix" or store.read_if_exists("bimix_observations") is not None]
    presets = {"small": with_evaluate(cfg, preset=args.small, seeds=args.small_seeds),
               "reference": with_evaluate(cfg, preset=args.reference, seeds=args.reference_seeds,
                                          budget_bytes=args.reference_budget or None)}
    runs = mix_methods(spark, cfg, methods, args.out, args.swarm_seeds)
    plans = print_plan(spark, presets, runs)
    evaluations = {label: score_runs(spark, c, runs, plans[label]) for label, c in presets.items()}
    domains = evaluations["small"].domains()
    scores = {label: intervals.Scores.from_frame(e.docs) for label, e in evaluations.items()}
    strata = intervals.strata(scores["small"].domains, domains, cfg.evaluate.bootstrap, cfg.evaluate.bootstrap_seed)
    names = [run.name for run in runs]
    result = fidelity.compare(scores["small"], scores["reference"], names, strata, {n: group(n) for n in names},
                              cfg.evaluate.bootstrap_seed)
    text = report(result, presets)
    out = Path(args.out) / "proxy_fidelity"
    out.mkdir(parents=True, exist_ok=True)
    result.runs.to_csv(out / "runs.csv", index=False)
    result.pairs.to_csv(out / "pairs.csv", index=False)
    (out / "report.txt").write_text(text + "\n")
    print("\n" + text)
    spark.stop()


if __name__ == "__main__":
    main()
