"""Command line: ``sklearn-ntps report`` runs the main job, offline.

    sklearn-ntps report --model SmolLM2-135M --dataset banking77
"""

from __future__ import annotations

import argparse
import sys
import time

DEFAULT_TRAIN = 600
DEFAULT_TEST = 300


def _parser():
    parser = argparse.ArgumentParser(
        prog="sklearn-ntps",
        description="Next Token Perception Score: which model and layer suit a labelled task.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser(
        "report",
        help="NTPS and a held-out linear probe for every layer; writes CSV, JSON and PNG.",
        description="For every layer of each model: NTPS (both variants) on the training "
        "split and the test accuracy of a logistic-regression probe; prints the table and "
        "the Spearman correlations, and writes report.csv, report.json and report.png.",
    )
    rep.add_argument("--model", action="append", metavar="NAME_OR_PATH",
                     help="a bundled name (SmolLM2-135M, all-MiniLM-L6-v2), a model folder, a "
                     ".gguf file or a cached hub id; repeat to compare models "
                     "(default: SmolLM2-135M)")
    rep.add_argument("--dataset", default="banking77",
                     help="banking77 (default), clinc150, sms_spam, trec or rotten_tomatoes")
    rep.add_argument("--n-train", type=int, default=DEFAULT_TRAIN,
                     help=f"training texts, a stratified subsample (default {DEFAULT_TRAIN})")
    rep.add_argument("--n-test", type=int, default=DEFAULT_TEST,
                     help=f"test texts, a stratified subsample (default {DEFAULT_TEST})")
    rep.add_argument("--full", action="store_true", help="use every text of both splits")
    rep.add_argument("--n-components", type=_components, default=0.25,
                     help="NTPS subspace dimension k: an int, or a fraction of the hidden size "
                     "(default 0.25)")
    rep.add_argument("--output-dir", default="ntps-report", help="where the files go")
    rep.add_argument("--batch-size", type=int, default=16)
    rep.add_argument("--max-length", type=int, default=512)
    rep.add_argument("--device", default="auto")
    rep.add_argument("--random-state", type=int, default=0)
    rep.add_argument("--no-plot", action="store_true", help="skip the PNG")
    rep.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _components(text):
    value = float(text)
    return int(value) if value >= 1 and value.is_integer() and "." not in text else value


def main(argv=None):
    """Entry point of the ``sklearn-ntps`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return _report(args)
    except KeyboardInterrupt:
        print("\nInterrupted: no report file was written.", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"sklearn-ntps: error: {exc}", file=sys.stderr)
        return 2


def _report(args):
    # Heavy imports after argument parsing, so --help is instant.
    from .datasets import load_dataset
    from .models import resolve_model
    from .report import check_writable, layer_report, save_report

    models = args.model or ["SmolLM2-135M"]
    # Every check that can fail does so before the first forward pass.
    folder = check_writable(args.output_dir)
    for model in models:
        resolve_model(model)
    sizes = {"train": None, "test": None} if args.full else {
        "train": args.n_train, "test": args.n_test}
    splits = {
        split: load_dataset(args.dataset, split=split, n_samples=n, random_state=args.random_state)
        for split, n in sizes.items()
    }
    start = time.perf_counter()
    report = layer_report(
        models, splits["train"].data, splits["train"].target,
        splits["test"].data, splits["test"].target,
        dataset=args.dataset, n_components=args.n_components,
        embedding_params={"batch_size": args.batch_size, "max_length": args.max_length,
                          "device": args.device},
        progress=not args.no_progress,
    )
    print(report.to_text())
    paths = save_report(report, folder, plot=not args.no_plot)
    print(f"Wrote {', '.join(str(p) for p in paths)} in {time.perf_counter() - start:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
