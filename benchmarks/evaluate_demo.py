"""Proxy evaluation of the methods on the quick-start corpus: the demo study in docs/evaluation.md.

    .venv/bin/samplemix demo-data && .venv/bin/samplemix run --config conf/local.yaml
    .venv/bin/python benchmarks/evaluate_demo.py                    # cpu preset, seeds 0 1 2: about 1 h on 2 cores
    .venv/bin/python benchmarks/evaluate_demo.py --preset gpu       # on a GPU machine
    .venv/bin/python benchmarks/evaluate_demo.py --summary-only     # the tables again, from what is stored
    .venv/bin/python benchmarks/evaluate_demo.py --summary-only --versus quadmix   # paired against another run
    .venv/bin/python benchmarks/evaluate_demo.py --summary-only --domains code email spam   # another view

Mixes each method (``_study.ALL_METHODS``: the fidelity study's eight, QuaDMix at its defaults and at the
setting its search proposed, and SampleMix with q from reference-model perplexity) from the quick start's
scored documents (``warehouse``) into ``out/evaluate_demo/<method>`` with the same token budget,
then runs ``samplemix evaluate`` on all of them: every proxy gets the same byte
budget, model and optimiser, and is scored on every held-out document. Resumable:
proxies already in ``warehouse/proxy_eval_curves`` are read back, not retrained,
so a killed run, or one that adds a method or a seed, trains only what is missing.
``bimix`` trains its own proxy swarm first (stored in ``bimix_observations``).

The perplexity row mixes from a copy of the quick start's warehouse whose quality stage was run again with
``quality.method: perplexity`` (the same documents, held-out set and diversity):

    cp -r warehouse out/evaluate_demo/perplexity_scores
    .venv/bin/samplemix run --config conf/local.yaml --set tables.warehouse=out/evaluate_demo/perplexity_scores \
        --set quality.method=perplexity --set 'quality.perplexity.reference=[news,speeches]'

The headline table is the macro over every held-out domain, the view configured
before any result was seen. The second table leaves out spam and raw mail, for
the reason printed above it; it is another view of the same proxies.
"""

from __future__ import annotations

from _study import configure_logging, mix_methods, study_arguments

from samplemix_spark.config import load_config
from samplemix_spark.engine import build_session
from samplemix_spark.evaluation import holdout as held
from samplemix_spark.evaluation import intervals
from samplemix_spark.evaluation.evaluate import Evaluation, evaluate, summarise
from samplemix_spark.tables import TableStore

HEADLINE = "Macro over every held-out domain (the headline, configured before the run)"
SECOND = ("Macro over code, news and speeches. Why a second view: spam and raw mail are text a user would filter "
          "out rather than teach a model, so a method that trades them away for the other domains may still be "
          "the better choice. Same proxies, same documents, same intervals.")
VIEWS = {HEADLINE: None, SECOND: ["code", "news", "speeches"]}


def versus_lines(evaluation: Evaluation, versus: str, domains: list[str], settings) -> str:
    """Every run's paired difference (macro bpb, run minus ``versus``) with its interval, one line each, on the
    ``report`` half of the scored documents, as the summary beside it."""
    scores = intervals.Scores.from_frame(held.in_half(evaluation.docs, "report"))
    if versus not in scores.bits:
        return f"(no run {versus} in this evaluation)"
    strata = intervals.strata(scores.domains, domains, settings.bootstrap, settings.bootstrap_seed)
    noise = intervals.seed_noise(scores, strata)
    lines = [f"{run} vs {versus}: {intervals.paired_difference(scores, run, versus, strata, noise).describe()}"
             for run in sorted(scores.bits) if run != versus]
    return "\n".join(lines)


def main() -> None:
    parser = study_arguments(__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--summary-only", action="store_true",
                        help="print the summaries from the stored evaluation without mixing or training")
    parser.add_argument("--versus", nargs="+", default=["samplemix_a0.8"], metavar="RUN",
                        help="also print every run's paired difference from these runs, in each view "
                             "(default: samplemix_a0.8, the quick start's setting)")
    parser.add_argument("--domains", nargs="+", metavar="DOMAIN",
                        help="print one view instead of the two configured: the macro over these held-out domains")
    args = parser.parse_args()
    configure_logging()
    cfg = load_config(args.config, [*args.overrides, f"evaluate.preset={args.preset}",
                                    f"evaluate.seeds={args.seeds}", f"evaluate.out={args.out}/results"])
    spark = build_session(cfg.engine)
    if not args.summary_only:
        runs = mix_methods(spark, cfg, args.methods, args.out, args.swarm_seeds)
        evaluate(spark, cfg, [run.store.cfg.warehouse for run in runs], [run.name for run in runs], reference=False)
    evaluation = Evaluation.read(TableStore(spark, cfg.tables))
    if evaluation is None:
        raise SystemExit(f"no per-document proxy evaluation in {cfg.tables.warehouse}: run without --summary-only")
    unknown = sorted(set(args.domains or []) - set(evaluation.docs["domain"]))
    if unknown:
        raise SystemExit(f"--domains names {', '.join(unknown)}, which the held-out set does not hold; held-out "
                         f"domains: {', '.join(sorted(set(evaluation.docs['domain'])))}")
    views = {f"Macro over {', '.join(args.domains)}": args.domains} if args.domains else VIEWS
    for title, domains in views.items():
        if domains and not set(domains) <= set(evaluation.docs["domain"]):
            continue
        summary = summarise(evaluation, cfg.evaluate.bootstrap, cfg.evaluate.bootstrap_seed, domains)
        print(f"\n{title}\n" + summary.to_string(float_format=lambda v: f"{v:.4f}"))
        for versus in args.versus:
            print(versus_lines(evaluation, versus, domains or evaluation.domains(), cfg.evaluate))
    spark.stop()


if __name__ == "__main__":
    main()
