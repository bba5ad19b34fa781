"""Command line: ``sklearn-ntps select`` and ``report`` run the main jobs, offline.

```
sklearn-ntps select --data my_texts.csv --model all-MiniLM-L6-v2 --model SmolLM2-135M
sklearn-ntps report --model SmolLM2-135M --dataset banking77
sklearn-ntps cache [info | clear [--older-than DAYS]]
```
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time
from pathlib import Path

import numpy as np

from ._utils import cache_dir, format_bytes, optional_import, write_atomic
from .scores.registry import score_names
from .splits import stratified_split

DEFAULT_TEXTS = 900


def _add_run_options(parser, *, output_dir, max_length):
    """The options every command that runs a model shares; only two defaults differ."""
    parser.add_argument("--output-dir", default=output_dir, help="where the files go")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=max_length)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--n-permutations", type=int, default=30,
                        help="shuffles of the labels every score is refitted on, for its chance "
                        "level (default 30; 0 skips them, and nothing then says whether a score "
                        "leaves chance)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--no-cache", dest="cache", action="store_false",
                        help="neither read nor write the statistics store (sklearn-ntps cache)")


def _add_data_options(parser, *, required):
    """Your own labelled texts: a file and the names of its two columns."""
    parser.add_argument("--data", metavar="FILE", required=required,
                        help="labelled texts: a .csv, .tsv, .jsonl or .parquet file with a "
                        "header (Parquet needs sklearn-ntps[data]); rows with an empty text are "
                        "dropped with a warning")
    parser.add_argument("--text-column", default="text", help="default: text")
    parser.add_argument("--label-column", default="label", help="default: label")


def _add_dask_options(parser):
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run the forward passes on the workers of this Dask scheduler "
                        "(tcp://host:8786), sharded; needs sklearn-ntps[dask]")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="start a local Dask cluster of N one-thread worker processes for "
                        "the run, and shard the forward passes over it")


def _check_dask(args):
    if args.scheduler and args.workers is not None:
        raise ValueError("--scheduler and --workers exclude each other: connect to a cluster "
                         "or start one.")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}.")
    if args.scheduler or args.workers:
        optional_import("distributed", "dask", "Sharding on Dask", check_only=True)


def _parser():
    parser = argparse.ArgumentParser(
        prog="sklearn-ntps",
        description="Next Token Perception Score: which model and layer suit a labelled task.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_select_parser(sub)
    rep = sub.add_parser(
        "report",
        help="Every score and a held-out linear probe for every layer; writes CSV, JSON and PNG.",
        description="For every layer of each model on each data set: NTPS and the peer scores "
        "(LogME, H-score, TransRate, RankMe, k-NN, a closed-form ridge probe) on the training "
        "blocks, and the held-out accuracy of a logistic-regression probe whose C is chosen by "
        "cross-validation. Prints, for every score, its Spearman correlation with the probe "
        "across layers and the regret of the layer it picks, in accuracy points (beside the "
        "'last layer' and '2/3 depth' rules), with intervals over tasks and the range over "
        "replicates, and writes report.csv, summary.csv, report.json and report.png.",
    )
    rep.add_argument("--model", action="append", metavar="NAME_OR_PATH",
                     help="a bundled name (SmolLM2-135M, all-MiniLM-L6-v2, all-mpnet-base-v2), a "
                     "model folder, a "
                     ".gguf file or a cached hub id; repeat to compare models "
                     "(default: SmolLM2-135M)")
    rep.add_argument("--dataset", action="append",
                     help="banking77 (default), clinc150, sms_spam, trec, rotten_tomatoes, "
                     "twenty_newsgroups, dbpedia, yahoo_answers, mcid or x_topic; repeat to "
                     "compare data sets")
    _add_data_options(rep, required=False)
    rep.add_argument("--test-data", metavar="FILE",
                     help="with --data: train every score and the probe on --data and test the "
                     "probe on this file (same columns); one fixed partition, no replicates")
    rep.add_argument("--n-texts", type=int,
                     help="texts drawn from each data set, stratified; each replicate trains on "
                     f"some of their blocks and tests on the others (default {DEFAULT_TEXTS}; "
                     "every row of a --data file)")
    rep.add_argument("--full", action="store_true", help="use every text of the data set")
    rep.add_argument("--n-components", type=_components, default=None,
                     help="NTPS subspace dimension k of every NTPS column: an int, or a fraction "
                     "of the hidden size (default: NTPSScorer's)")
    rep.add_argument("--n-replicates", type=int, default=1,
                     help="random partitions of the texts into disjoint training and test blocks;"
                     " each refits every score and probe (default 1; the validity study uses 3)")
    rep.add_argument("--n-blocks", type=int, default=10,
                     help="stratified blocks the texts are dealt into (default 10)")
    rep.add_argument("--test-blocks", type=int, default=3,
                     help="blocks each replicate tests on (default 3)")
    rep.add_argument("--n-jobs", type=int, default=-1,
                     help="processes the layers' probes run in, each beside the next layers' "
                     "scores (default -1: one per core; 1: here, each probe's folds in "
                     "parallel)")
    _add_run_options(rep, output_dir="ntps-report", max_length=512)
    _add_dask_options(rep)
    pre = sub.add_parser(
        "lora-prescreen",
        help="Will LoRA fine-tuning pay off? Measures it: the frozen model's scores, the "
        "probe and, unless --no-lora, LoRA's gain over its own start.",
        description="For each data set (and, with --subtasks, random 5-class sub-tasks of the "
        "intent sets) or your own --data: NTPS and the peers on the training texts, the test "
        "accuracy of a frozen linear probe and, unless --no-lora, the test accuracy of a LoRA "
        "fine-tune (HFLoRAClassifier's recipe) and of its own start, the measured gain and NTPS "
        "after LoRA. No gain is predicted: the LoRA studies v2 (docs/lora.md section 5; 20 "
        "rows, 12 tasks) and v3 (24 tasks, 1,000 texts each) could not detect whether NTPS, or "
        "any score of the frozen model, relates to the gain, so the command recommends nothing "
        "and prints the studies' gains at their own sizes. Writes prescreen.csv, prescreen.json "
        "and prescreen.png.",
    )
    pre.add_argument("--model", default="SmolLM2-135M", metavar="NAME_OR_PATH")
    pre.add_argument("--dataset", action="append",
                     help="as for report; repeat for several (default: banking77, unless "
                     "--data)")
    _add_data_options(pre, required=False)
    pre.add_argument("--test-data", metavar="FILE",
                     help="with --data: the test texts (same columns); without it, a "
                     "stratified --n-test of --data's rows (at most a fifth) is held out")
    pre.add_argument("--subtasks", action="store_true",
                     help="add 4 disjoint 5-class sub-tasks of each intent set (banking77, "
                     "clinc150), classes drawn at random (seed --random-state), as the first "
                     "LoRA study did (docs/lora.md section 1). Not study v2's groups: v2 chose "
                     "them by all-MiniLM-L6-v2's class centroids (greedy groups of mutually "
                     "close classes, choose_groups in docs/lora_study.py), not at random")
    pre.add_argument("--n-train", type=int, default=500)
    pre.add_argument("--n-test", type=int, default=300)
    pre.add_argument("--no-lora", action="store_true",
                     help="the frozen model's scores and the probe only; no gain is "
                     "measured")
    pre.add_argument("--max-steps", type=int, default=None,
                     help="LoRA's most optimizer steps (default: HFLoRAClassifier's, 10 passes "
                          "over the texts, stopped early on a validation split)")
    pre.add_argument("--learning-rate", type=float, default=None,
                     help="LoRA adapters' peak learning rate (default: HFLoRAClassifier's)")
    _add_run_options(pre, output_dir="ntps-prescreen", max_length=64)
    cache = sub.add_parser(
        "cache",
        help="Show or clear the statistics store (the cache of extracted statistics).",
        description="'info' (the default) shows the store's folder, its entries, their total size, "
        "the size cap ($SKLEARN_NTPS_CACHE_MAX_BYTES, e.g. 500M, 10G, 8GiB or none; default "
        "20G) and the largest and least recently used entries. 'clear' removes the entries, "
        "without asking, and prints what it freed.",
    )
    cache.add_argument("action", nargs="?", choices=["info", "clear"], default="info")
    cache.add_argument("--older-than", type=float, metavar="DAYS",
                       help="clear only the entries unused for DAYS days")
    cache.add_argument("--folder", help="the cache folder (default: $SKLEARN_NTPS_CACHE/embeddings,"
                       " else ~/.cache/sklearn-ntps/embeddings)")
    return parser


def _add_select_parser(sub):
    from .choice.protocol import AGGREGATIONS

    sel = sub.add_parser(
        "select",
        help="Which model and layer for your labelled texts: every layer scored, the pick, and "
        "how sure it is.",
        description="Runs each model once over the texts of --data, scores every layer with one "
        "score on the states rescaled as the probe's scaler does, and picks a (model, layer). "
        "Prints the pairs ranked, each beside its chance level (the score on shuffled labels), "
        "with 95% intervals from disjoint blocks of the texts, the margin of the pick over the "
        "runner-up and the pairs it cannot be told apart from; writes select.csv, select.json "
        "and select.png.",
    )
    _add_data_options(sel, required=True)
    sel.add_argument("--model", action="append", metavar="NAME_OR_PATH",
                     help="a bundled name, a model folder, a .gguf file or a cached hub id; "
                     "repeat to compare models (default: the three bundled models, "
                     "SmolLM2-135M, all-MiniLM-L6-v2 and all-mpnet-base-v2)")
    sel.add_argument("--score", help=f"a registered score: {', '.join(score_names())} "
                     "(default: with one --model, logme, rule B of docs/validity.md for "
                     "choosing a layer; with several, hscore, rule M for choosing among "
                     "models, which separated no score and takes the cheapest of the tied)")
    sel.add_argument("--aggregate", choices=AGGREGATIONS, default=AGGREGATIONS[0],
                     help="pick a model by its best layer's score, or by the mean over its "
                     "layers; then its best layer (default %(default)s)")
    sel.add_argument("--layers", type=_int_list, metavar="I,J,...",
                     help="only these hidden states of every model, e.g. 0,4,8 (negative ones "
                     "count from the end: --layers=-3,-2,-1; default: every layer)")
    sel.add_argument("--n-blocks", type=int, default=5,
                     help="disjoint blocks of the texts the intervals come from (default 5)")
    sel.add_argument("--torch-dtype", default="auto",
                     help="the dtype the models compute in (default auto: float32 on the CPU); "
                     "bfloat16 is faster on processors with bfloat16 matrix units")
    sel.add_argument("--no-racing", action="store_true",
                     help="score every (model, layer) on every block; by default the blocks "
                     "are read in rounds and pairs separated below the leader stop early")
    _add_run_options(sel, output_dir="ntps-select", max_length=512)
    _add_dask_options(sel)


def _int_list(text):
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}"
                                         ) from None


def _components(text):
    value = float(text)
    return int(value) if value >= 1 and value.is_integer() and "." not in text else value


def main(argv=None):
    """Entry point of the ``sklearn-ntps`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        command = {"cache": _cache, "report": _report, "lora-prescreen": _prescreen,
                   "select": _select}
        return command[args.command](args)
    except KeyboardInterrupt:
        print("\nInterrupted: no output file was written.", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"sklearn-ntps: error: {in_flags(str(exc))}", file=sys.stderr)
        return 2


# The estimators validate their parameters once; the command line only names them as flags.
_FLAGS = {"scorer": "--score", "n_blocks": "--n-blocks", "n_test_blocks": "--test-blocks",
          "n_replicates": "--n-replicates", "n_permutations": "--n-permutations",
          "models": "--model", "layers": "--layers", "aggregate": "--aggregate",
          "batch_size": "--batch-size", "max_length": "--max-length",
          "n_components": "--n-components", "racing": "--no-racing",
          "torch_dtype": "--torch-dtype"}


def in_flags(message: str) -> str:
    """An estimator's error in the command line's words: its parameters named as flags.

    Examples
    --------
    >>> from sklearn_ntps.cli import in_flags
    >>> in_flags("The 'scorer' parameter of LayerSelector must be a str. Got 1 instead.")
    '--score must be a str. Got 1 instead.'
    >>> in_flags("n_test_blocks must be between 1 and n_blocks - 1 (9), got 10.")
    '--test-blocks must be between 1 and --n-blocks - 1 (9), got 10.'
    """
    message = re.sub(r"The '(\w+)' parameter of \w+",
                     lambda m: _FLAGS.get(m[1], m[0]), message)
    underscored = "|".join(name for name in _FLAGS if "_" in name)
    return re.sub(rf"\b({underscored})\b", lambda m: _FLAGS[m[1]], message)


def _select(args):
    from .choice.selection import DEFAULT_MODELS, LayerSelector
    from .choice.selection_report import selection_files, selection_text
    from .evidence.report import check_writable

    # What the command line alone knows is checked here; the selector's fit checks its
    # parameters, labels and models before its first forward pass, and a failed fit takes
    # the folder it was given back.
    _check_dask(args)
    if not args.no_plot:
        _require_matplotlib()
    texts, labels = _load_table(args, args.data)
    models = list(dict.fromkeys(args.model or DEFAULT_MODELS))
    selector = LayerSelector(
        models, scorer=args.score, layers=args.layers, aggregate=args.aggregate,
        n_permutations=args.n_permutations, racing=not args.no_racing,
        n_blocks=args.n_blocks, batch_size=args.batch_size, max_length=args.max_length,
        device=args.device, torch_dtype=args.torch_dtype, cache=args.cache,
        progress=not args.no_progress, random_state=args.random_state)
    created = not Path(args.output_dir).exists()
    folder = check_writable(args.output_dir)
    start = time.perf_counter()
    with _taken_back_on_failure(folder, created):
        with _scheduler(args) as scheduler:
            selector.set_params(scheduler=scheduler).fit(texts, labels)
        context = {"source": args.data, "n_classes": int(np.unique(labels).size)}
        files = selection_files(selector, plot=not args.no_plot, **context)
    print(selection_text(selector, **context))
    for name, data in files.items():
        write_atomic(folder / name, data)
    print(f"Wrote {', '.join(str(folder / n) for n in files)} in "
          f"{time.perf_counter() - start:.0f} s.")
    return 0


@contextlib.contextmanager
def _taken_back_on_failure(folder, created):
    """On any failure, remove the output folder if this run made it and wrote nothing."""
    try:
        yield
    except BaseException:
        if created and not any(folder.iterdir()):
            folder.rmdir()
        raise


def _load_table(args, path):
    from .datasets import load_table

    return load_table(path, text_column=args.text_column, label_column=args.label_column,
                      return_X_y=True)


def _report(args):
    from .datasets import load_dataset
    from .evidence.report import check_writable, run_report, save_report
    from .scores.registry import default_scorers

    models = args.model or ["SmolLM2-135M"]
    names = list(dict.fromkeys(args.dataset or ([] if args.data else ["banking77"])))
    # run_report checks the partitions and the models before the first forward pass.
    if args.test_data is not None:
        if args.data is None:
            raise ValueError("--test-data needs --data, the training texts.")
        if args.n_replicates != 1 or args.n_texts is not None or args.full:
            raise ValueError("--test-data is one fixed partition of every row of both files: "
                             "it takes no --n-replicates, --n-texts or --full.")
    _check_dask(args)
    if not args.no_plot:
        _require_matplotlib()
    datasets = {}
    if args.data is not None:
        datasets[Path(args.data).name] = _user_dataset(args)
    for name in names:
        data = load_dataset(name, split="all", random_state=args.random_state,
                            n_samples=None if args.full else args.n_texts or DEFAULT_TEXTS)
        datasets[name] = (data.data, data.target)
    scorers = default_scorers()
    for scorer in scorers.values():
        params = scorer.get_params()
        if args.n_components is not None and "n_components" in params:
            scorer.set_params(n_components=args.n_components)
        if "n_permutations" in params:
            scorer.set_params(n_permutations=args.n_permutations)
    created = not Path(args.output_dir).exists()
    folder = check_writable(args.output_dir)
    start = time.perf_counter()
    with _taken_back_on_failure(folder, created), _scheduler(args) as scheduler:
        report = run_report(
            models, datasets, scorers=scorers, n_replicates=args.n_replicates,
            n_blocks=args.n_blocks, n_test_blocks=args.test_blocks,
            random_state=args.random_state,
            embedding_params={"batch_size": args.batch_size, "max_length": args.max_length,
                              "device": args.device, "scheduler": scheduler,
                              "cache": args.cache},
            n_jobs=args.n_jobs, progress=not args.no_progress,
        )
    print(report.to_text())
    paths = save_report(report, folder, plot=not args.no_plot)
    print(f"Wrote {', '.join(str(p) for p in paths)} in {time.perf_counter() - start:.0f} s.")
    return 0


def _user_dataset(args):
    """``--data`` as ``(texts, labels)``, subsampled to ``--n-texts``.

    With ``--test-data``, ``(X_train, y_train, X_test, y_test)`` instead.
    """
    X, y = _load_table(args, args.data)
    if args.test_data is not None:
        return (X, y, *_load_table(args, args.test_data))
    n = None if args.full else args.n_texts
    return _subsample(X, y, n, args.random_state)


def _scheduler(args):
    """The Dask scheduler address of the run: given, or of a local cluster open for the run."""
    if not args.workers:
        return contextlib.nullcontext(args.scheduler)
    from .states.distributed import local_cluster

    return local_cluster(args.workers)


def _prescreen(args):
    from .datasets import load_dataset
    from .evidence.report import check_writable
    from .lora.prescreen import intent_subtasks, plot_prescreen, run_prescreen
    from .states.models import resolve_model

    if not args.no_plot:
        _require_matplotlib()
    if not args.no_lora:
        optional_import("peft", "lora", "LoRA fine-tuning", check_only=True)
    names = list(dict.fromkeys(args.dataset or ([] if args.data else ["banking77"])))
    tasks = {}
    if args.test_data is not None and args.data is None:
        raise ValueError("--test-data needs --data, the training texts.")
    if args.data is not None:
        tasks[Path(args.data).name] = _user_split(args)
    for name in names:
        full = [load_dataset(name, split=split) for split in ("train", "test")]
        data = (full[0].data, full[0].target, full[1].data, full[1].target)
        tasks[name] = data
        if args.subtasks and name in ("banking77", "clinc150"):
            for i, sub in enumerate(intent_subtasks(data, seed=args.random_state)):
                tasks[f"{name}/group{i}"] = sub
    for name, (X_tr, y_tr, X_te, y_te) in tasks.items():
        tasks[name] = (*_subsample(X_tr, y_tr, args.n_train, args.random_state),
                       *_subsample(X_te, y_te, args.n_test, args.random_state))
    resolve_model(args.model)
    folder = check_writable(args.output_dir)  # after the data: a bad file leaves no folder
    start = time.perf_counter()
    result = run_prescreen(
        args.model, tasks, run_lora=not args.no_lora,
        lora_params={"batch_size": args.batch_size, "device": args.device,
                     "random_state": args.random_state,
                     **{k: v for k, v in (("max_steps", args.max_steps),
                                          ("learning_rate", args.learning_rate)) if v is not None}},
        embedding_params={"batch_size": args.batch_size, "device": args.device,
                          "cache": args.cache},
        max_length=args.max_length, n_permutations=args.n_permutations,
        progress=not args.no_progress,
    )
    print(result.to_text())
    files = {"prescreen.csv": result.to_csv(), "prescreen.json": result.to_json()}
    if not args.no_plot and not args.no_lora:
        files["prescreen.png"] = plot_prescreen(result)
    for name, data in files.items():
        write_atomic(folder / name, data)
    print(f"Wrote {', '.join(str(folder / n) for n in files)} in "
          f"{time.perf_counter() - start:.0f} s.")
    return 0


def _user_split(args):
    """``--data`` (and ``--test-data``) as ``(X_train, y_train, X_test, y_test)``.

    Without a test file, a stratified ``--n-test`` of the rows (a fifth if there are fewer) is
    held out.
    """
    X, y = _load_table(args, args.data)
    if args.test_data is not None:
        return (X, y, *_load_table(args, args.test_data))
    n_test = min(args.n_test, len(X) // 5) if args.n_test is not None else len(X) // 5
    test, train = stratified_split(y, n_test, random_state=args.random_state)
    return _rows(X, y, train) + _rows(X, y, test)


def _subsample(X, y, n, random_state):
    """A stratified subsample of at most ``n`` texts (all of them when there are fewer)."""
    if n is None or n >= len(X):
        return list(X), y
    return _rows(X, y, stratified_split(y, n, random_state=random_state)[0])


def _rows(X, y, index):
    return [X[i] for i in index], np.asarray(y)[index]


def _cache(args):
    import os
    from pathlib import Path

    from .states import cache

    folder = Path(args.folder).expanduser() if args.folder else cache_dir() / cache.FOLDER
    if args.older_than is not None and (args.action != "clear" or args.older_than < 0):
        raise ValueError("--older-than takes a number of days >= 0, after 'clear'.")
    if args.action == "clear":
        older = None if args.older_than is None else args.older_than * 86400
        n, freed = cache.clear(folder, older_than=older)
        print(f"Removed {n} entries from {folder}: {format_bytes(freed)} freed.")
        return 0
    listed = cache.entries(folder)
    total = sum(e.nbytes for e in listed)
    source = (f"${cache.MAX_BYTES_ENV}" if os.environ.get(cache.MAX_BYTES_ENV)
              else f"the default; set ${cache.MAX_BYTES_ENV} to change it")
    print(f"Cache folder: {folder}\n{len(listed)} entries, {format_bytes(total)} of a "
          f"{format_bytes(cache.resolve_max_bytes())} cap ({source}).")
    for title, chosen in (("Largest", sorted(listed, key=lambda e: -e.nbytes)),
                          ("Least recently used", listed)):
        if listed:
            print(f"{title}:")
        for e in chosen[:5]:
            used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))
            print(f"  {format_bytes(e.nbytes):>9}  used {used}  {e.name}  {e.label or ''}")
    return 0


def _require_matplotlib():
    optional_import("matplotlib", "plot", "The report's figure", alternative=" or pass --no-plot",
                    check_only=True)


if __name__ == "__main__":
    sys.exit(main())
