"""``samplemix`` command line: one sub-command per stage, ``run`` for all of them.

    samplemix run --config conf/local.yaml [--set mixing.alpha=0.5 ...]
    samplemix ingest|quality|diversity|mix|report --config ...
    samplemix sql "SELECT * FROM domain_mix" --config ...
    samplemix evaluate warehouse [RUN ...] --config ...  # proxies trained on each run's output
    samplemix tune --alphas 0 0.5 0.8 1 --config ...      # alpha and tau by proxy loss
    samplemix distill-encoder --config ...           # the static encoder, once (no Spark)
    samplemix demo-data [--max-per-domain 2500]     # real text from installed packages
    samplemix demo-data --synthetic --docs 20000    # generated text with q and d columns

The same function serves spark-submit: ``jobs/*.py`` call ``main`` with the stage name.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import NoReturn, Optional, Sequence

from samplemix_spark.demo.real import DEFAULT_NPM_DIR
from samplemix_spark.errors import ConfigError, SampleMixError

log = logging.getLogger("samplemix_spark")
DEBUG_ENV = "SAMPLEMIX_DEBUG"

STAGE_HELP = {
    "ingest": "read sources, count tokens, write documents and rejects",
    "quality": "write the quality table (q per doc_id)",
    "embed": "embed every document with the diversity encoder",
    "cluster": "fit spherical k-means centroids on a subsample (driver)",
    "assign": "assign every document to its nearest centroid",
    "domains": "label documents with groups of their k-means clusters (domain.method clusters)",
    "diversity": "write cluster statistics and the diversity table (d per doc_id)",
    "mix": "compute weights and counts, write weights, mix_run and output",
    "report": "write and print the per-domain report",
    "annotate": "label documents with the quality rubric through a chat-completions endpoint",
    "train-quality": "train the ordinal quality evaluator and report its held-out metrics",
    "score-quality": "score documents with the trained quality evaluator",
}


# Commands that read finished tables instead of running a stage.
_TOOLS = ("sql", "compare", "sweep", "evaluate", "tune")
# Commands that write no table of the configured warehouse, so they take no writer lease.
_READERS = ("sql", "compare")


def _evaluate_overrides(args: argparse.Namespace) -> list[str]:
    """``evaluate`` flags as config overrides, so they are validated like the YAML keys."""
    flags = {"seeds": args.seeds, "preset": args.preset}
    if args.command == "evaluate":
        flags["out"] = args.out
    return [f"evaluate.{key}={value}" for key, value in flags.items() if value is not None]


def _cap(text: str) -> Optional[float]:
    return None if text.lower() in ("none", "null") else float(text)


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (default: built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set mixing.tau=0.1 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samplemix", description="SampleMix data mixing on Spark")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run every stage in order, skipping stages that are up to date")
    run.add_argument("--force", action="store_true", help="rerun every stage, even if up to date")
    run.add_argument("--incremental", action="store_true",
                     help="refresh: ingest, score and embed only documents with a new doc_id, assign them to the "
                          "stored centroids, recompute diversity, weights and counts over the whole corpus")
    run.add_argument("--recluster", action="store_true",
                     help="with --incremental: fit new centroids even below diversity.recluster_share")
    run.add_argument("--resplit", action="store_true",
                     help="split the sources again under the configured ingest.holdout_* settings and refresh: "
                          "documents that stay in training keep their scores and embeddings")
    _add_config_args(run)
    for stage, text in STAGE_HELP.items():
        stage_parser = sub.add_parser(stage, help=text)
        _add_config_args(stage_parser)
        if stage == "report":
            stage_parser.add_argument("--html", help="also write a page with the figures, e.g. out/report.html")
    sql = sub.add_parser("sql", help="run a SQL query over the pipeline's tables and views")
    sql.add_argument("query")
    _add_config_args(sql)
    compare = sub.add_parser("compare", help="compare finished mix runs (warehouse folders) side by side")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="warehouse folder of a finished run")
    compare.add_argument("--names", nargs="+", help="labels for the runs (default: folder names)")
    compare.add_argument("--out", default="out/compare", help="output folder (default: out/compare)")
    _add_config_args(compare)
    evaluate = sub.add_parser("evaluate", help="train proxy models on finished mix runs and score them on the "
                                                "held-out set (bits per byte)")
    evaluate.add_argument("runs", nargs="+", metavar="RUN", help="warehouse folder of a finished mix run")
    evaluate.add_argument("--names", nargs="+", help="labels for the runs (default: folder names)")
    evaluate.add_argument("--seeds", nargs="+", type=int, help="proxy seeds (default: evaluate.seeds, 0 1 2)")
    evaluate.add_argument("--preset", help="proxy size: test, cpu, reference or gpu (default: evaluate.preset, cpu)")
    evaluate.add_argument("--no-reference", action="store_true",
                          help="with one RUN: do not build and train the natural-proportions reference mix")
    evaluate.add_argument("--out", help="folder for figures and evaluate.csv (default: evaluate.out)")
    _add_config_args(evaluate)
    tune = sub.add_parser("tune", help="choose alpha and tau by the held-out loss of proxies trained on each "
                                        "setting's mix")
    tune.add_argument("--alphas", nargs="+", type=float, default=[0.0, 0.2, 0.5, 0.8, 1.0])
    tune.add_argument("--taus", nargs="+", type=float, default=[0.2])
    tune.add_argument("--max-repeats", nargs="+", type=_cap, default=[None], metavar="CAP",
                      help="repetition caps to try; 'none' for no cap (default: none)")
    tune.add_argument("--seeds", nargs="+", type=int, help="proxy seeds (default: evaluate.seeds, 0 1 2)")
    tune.add_argument("--preset", help="proxy size: test, cpu, reference or gpu (default: evaluate.preset, cpu)")
    tune.add_argument("--out", default="out/tune", help="folder for tune.png and tune.csv (default: out/tune)")
    tune.add_argument("--domains", action="store_true",
                      help="search domain proportions instead: a regression of held-out loss over a proxy swarm")
    tune.add_argument("--mixtures", type=int, default=10,
                      help="with --domains: random mixtures added to BiMix's design (default: 10)")
    tune.add_argument("--method", choices=["samplemix", "quadmix"], default="samplemix",
                      help="quadmix: QuaDMix's parameter search over --samples drawn settings")
    tune.add_argument("--samples", type=int, default=20,
                      help="with --method quadmix: settings drawn and trained (default: 20; resumable)")
    _add_config_args(tune)
    sweep = sub.add_parser("sweep", help="domain mix over a grid of alpha, tau and budgets, from stored scores")
    sweep.add_argument("--alphas", nargs="+", type=float, default=[0.0, 0.2, 0.5, 0.8, 1.0])
    sweep.add_argument("--taus", nargs="+", type=float, default=[0.2])
    sweep.add_argument("--fractions", nargs="+", type=float, default=[0.2, 1.0],
                       help="token budgets as fractions of the source tokens")
    sweep.add_argument("--out", default="out/sweep", help="folder for sweep.png (default: out/sweep)")
    _add_config_args(sweep)
    distill = sub.add_parser("distill-encoder",
                             help="distil the static encoder (diversity.encoder: static) from diversity.static.source "
                                  "once, into diversity.static.path; no Spark")
    distill.add_argument("--out", help="folder to distil under (default: diversity.static.path, else encoders/ "
                                       "beside the warehouse)")
    _add_config_args(distill)
    demo = sub.add_parser("demo-data", help="write the demo corpus: real text (default) or generated")
    demo.add_argument("--out", help="output folder (default: data/demo, with --synthetic data/synthetic)")
    demo.add_argument("--max-per-domain", type=int, default=2500,
                      help="real text: documents per domain, spread over each source (default: 2500)")
    demo.add_argument("--npm-dir", default=DEFAULT_NPM_DIR,
                      help=f"real text: folder whose node_modules holds the npm sources (default: {DEFAULT_NPM_DIR})")
    demo.add_argument("--synthetic", action="store_true",
                      help="generated text with precomputed q and d columns (conf/synthetic.yaml reads it)")
    demo.add_argument("--docs", type=int, default=20000, help="--synthetic: number of documents (default: 20000)")
    demo.add_argument("--seed", type=int, default=7, help="--synthetic: generator seed")
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help=f"show the full traceback of a failure (or set {DEBUG_ENV}=1)")
    return parser


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s samplemix %(message)s", datefmt="%H:%M:%S")
    for noisy in ("py4j", "pyspark", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _run(args: argparse.Namespace) -> None:
    from samplemix_spark.config import load_config
    from samplemix_spark.engine import build_session
    from samplemix_spark.pipeline import plan
    from samplemix_spark.tables.lease import writer_lease

    extra = _evaluate_overrides(args) if args.command in ("evaluate", "tune") else []
    cfg = load_config(args.config, [*args.overrides, *extra])
    if args.command == "run" and (args.incremental or args.resplit) and args.force:
        raise ConfigError(f"--{'incremental' if args.incremental else 'resplit'} and --force do not go together: "
                          "--force reruns every stage in full")
    if args.command == "run" and args.recluster and not (args.incremental or args.resplit):
        raise ConfigError("--recluster applies to --incremental runs; a full run always fits new centroids")
    if args.command == "run":
        planned = plan(cfg)
    else:
        planned = plan(cfg, () if args.command in _TOOLS else (args.command,))
    spark = build_session(cfg.engine)  # checks passed: missing models, paths or keys fail before this
    lease = None if args.command in _READERS else writer_lease(spark, cfg.tables, f"samplemix {args.command}")
    with lease if lease is not None else nullcontext():
        _dispatch(spark, cfg, args, planned)
    spark.stop()


def _dispatch(spark, cfg, args: argparse.Namespace, planned) -> None:
    """Run the command's work; under ``_run``'s writer lease when it writes tables."""
    from samplemix_spark.pipeline import execute, run_step

    if args.command == "run" and (args.incremental or args.resplit):
        from samplemix_spark.refresh import run_incremental

        results = run_incremental(spark, cfg, recluster=args.recluster, planned=planned, resplit=args.resplit)
        log.info("refresh done in %.1f s", sum(r.seconds for r in results))
    elif args.command == "run":
        results = execute(spark, cfg, planned, resume=not args.force)
        log.info("pipeline done in %.1f s", sum(r.seconds for r in results))
    elif args.command not in _TOOLS:
        for _, step in planned:  # an explicit stage command always runs
            run_step(spark, cfg, step)
        if args.command == "report" and args.html:
            from samplemix_spark.report.html import write_html
            from samplemix_spark.tables import TableStore

            log.info("report: wrote %s", write_html(spark, TableStore(spark, cfg.tables), Path(args.html)))
    elif args.command == "sql":
        _sql(spark, cfg, args.query)
    elif args.command == "evaluate":
        from samplemix_spark.evaluation.evaluate import evaluate

        evaluate(spark, cfg, args.runs, args.names, reference=not args.no_reference)
    elif args.command == "tune":
        from samplemix_spark.evaluation.tune import grid, tune, tune_domains

        if args.method == "quadmix":
            from samplemix_spark.evaluation.tune_quadmix import tune_quadmix

            tune_quadmix(spark, cfg, args.samples, Path(args.out))
        elif args.domains:
            tune_domains(spark, cfg, args.mixtures, Path(args.out))
        else:
            tune(spark, cfg, grid(args.alphas, args.taus, args.max_repeats), Path(args.out))
    elif args.command == "sweep":
        from samplemix_spark.mixing.weights import quality_view
        from samplemix_spark.report.sweep import run_sweep
        from samplemix_spark.tables import TableStore

        run_sweep(spark, TableStore(spark, cfg.tables), cfg.mixing, args.alphas, args.taus, args.fractions,
                  Path(args.out), quality_view(cfg))
    elif args.command == "compare":
        from samplemix_spark.report.compare import compare_runs

        if args.names and len(args.names) != len(args.runs):
            raise ConfigError(f"--names gives {len(args.names)} labels for {len(args.runs)} runs")
        compare_runs(spark, args.runs, cfg.tables.format, Path(args.out), args.names)


def _sql(spark, cfg, query: str) -> None:
    from samplemix_spark.report import register_domain_mix_view
    from samplemix_spark.report.domains import plain_table
    from samplemix_spark.tables import TableStore

    store = TableStore(spark, cfg.tables)
    store.register_views()
    if store.exists("weights"):
        register_domain_mix_view(spark, store)
    # Plain integers, so the output stays easy to read back; wide results wrap in blocks.
    print(plain_table(spark.sql(query).toPandas(), separators=False))


def _demo_data(args: argparse.Namespace) -> None:
    if args.synthetic:
        from samplemix_spark.demo.synthetic import write_corpus

        out = args.out or "data/synthetic"
        paths = write_corpus(out, args.docs, args.seed)
        log.info("wrote %d generated documents to %d files under %s", args.docs, len(paths), out)
        return
    from samplemix_spark.demo.real import write_real_corpus

    out = args.out or "data/demo"
    written = write_real_corpus(out, args.max_per_domain, args.npm_dir)
    log.info("wrote %d real documents in %d domains under %s", sum(written.values()), len(written), out)


def _distill_encoder(args: argparse.Namespace) -> None:
    from samplemix_spark.config import load_config
    from samplemix_spark.diversity.embed import static_encoder_folder

    overrides = [*args.overrides, *([f"diversity.static.path={args.out}"] if args.out else [])]
    folder = static_encoder_folder(load_config(args.config, overrides))
    log.info("static encoder ready: %s", folder)
    print(folder)


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return " ".join(lines) if lines else type(exc).__name__


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run a command; a failure prints one line and exits non-zero (2: input or config, 1: anything else)."""
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    _configure_logging()
    try:
        if args.command == "demo-data":
            _demo_data(args)
        elif args.command == "distill-encoder":
            _distill_encoder(args)
        else:
            _run(args)
    except SampleMixError as exc:
        if debug:
            traceback.print_exc()
        print(f"samplemix: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, the traceback on request
        if debug:
            traceback.print_exc()
        missing = _missing_engine(exc)
        if missing:
            print(f"samplemix: error: {missing}", file=sys.stderr)
            return 2
        first = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else ""
        print(f"samplemix: error: {type(exc).__name__}: {first} (run with --debug or {DEBUG_ENV}=1 for the "
              "traceback)", file=sys.stderr)
        return 1
    return 0


def _missing_engine(exc: Exception) -> Optional[str]:
    """What to install when pyspark is absent: it is an extra, since a cluster brings its own."""
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "pyspark":
        return ("pyspark is not installed: install samplemix-spark[local] for the embedded engine, "
                "samplemix-spark[spark] for classic Spark, or run under spark-submit, whose Spark provides it")
    return None


def run(argv: Optional[Sequence[str]] = None) -> NoReturn:
    """The console entry: ``main``, then an exit that is safe with the embedded engine."""
    code = main(argv)
    # Only a process that opened a session can hold an embedded engine; one that never
    # did (bad arguments, no pyspark installed) exits plainly.
    session = sys.modules.get("samplemix_spark.engine.session")
    if session is None:
        sys.exit(code)
    session.exit_process(code)


if __name__ == "__main__":
    run()
