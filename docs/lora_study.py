"""The LoRA prescreening study v2 of docs/lora.md, section 4: does a score of the frozen model
(NTPS, a peer, or plain headroom) say beforehand how much LoRA gains over the tuned probe?

The population, the outcome, the predictors and the rules are the constants below and
section 4 of docs/lora.md, committed before any number of the study existed.

    python docs/lora_study.py            # run what is missing, then every table
    python docs/lora_study.py --tables   # the tables again, from docs/lora_v2/rows/

First the task rule writes ``docs/lora_v2/groups.json``: ten five-class groups of confusable
classes, from all-MiniLM-L6-v2's frozen class centroids (:func:`choose_groups`). Then each
(task, model) job writes ``docs/lora_v2/rows/<task>__<model>.csv`` (and ``.json``) when it
finishes, so a killed run resumes where it stopped. ``--tables`` writes ``study.json`` and
``tables.md`` (docs/lora_tables.py).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "lora_v2"
SEED = 0
# Everything the protocol fixes; --smoke swaps in SMOKE's values (a dry run, not the study).
PLAN = {
    "models": ("SmolLM2-135M", "all-MiniLM-L6-v2"),
    "centroid_model": "all-MiniLM-L6-v2",
    # Whole data sets: (training texts, test texts), stratified and seeded, drawn from the
    # loaders' "train" and "test" splits (one stratified split of the cleaned texts).
    "whole": {"trec": (300, 500), "rotten_tomatoes": (300, 500)},
    # Five-class groups of confusable classes, how many from each source (choose_groups).
    "groups": {"banking77": 4, "clinc150": 4, "mcid": 2},
    "group_size": 5,
    "per_class": {"train": 20, "test": 40},  # test: up to 40, as many as the split has
    "centroid_texts": 60,  # per class (the first 60 in a seeded order); None: every one
    "eligible": (0.5, 0.9),  # the probe's 3-fold CV accuracy on the training texts
    "n_blocks": 5,
    # HFLoRAClassifier's defaults otherwise, as they were when v2 ran: 300 steps, no early stop.
    "lora": {"random_state": SEED, "max_length": 64, "max_steps": 300, "n_iter_no_change": None},
    "embedding": {"max_length": 64, "batch_size": 16, "cache": False, "progress": False},
}
SMOKE = {"whole": {"trec": (30, 30), "rotten_tomatoes": (20, 20)}, "groups": {"banking77": 1},
         "per_class": {"train": 6, "test": 6}, "centroid_texts": 2, "eligible": (0.0, 1.0),
         "lora": {"random_state": SEED, "max_length": 64, "max_steps": 3,
                  "n_iter_no_change": None}}
PEERS = ("logme", "knn", "ridge_loo")
COLUMNS = ["task", "source", "model", "n_classes", "n_train", "n_test", "probe_cv_accuracy",
           "eligible", "probe_C", "probe_accuracy", "lora_step0_accuracy", "lora_accuracy",
           "gain", "headroom", "ntps", *PEERS, "ntps_after", "ntps_rise", "lora_seconds",
           "median_tokens", "truncated_share"]


# ----------------------------------------------------------------- the task rule
def choose_groups(centroids, n_groups, size):
    """The rule of docs/lora.md section 4: greedy groups of mutually close classes.

    The seed is the remaining class whose cosine similarity to its nearest remaining
    class is highest; the group is the seed and the ``size - 1`` remaining classes
    nearest the seed's centroid; those leave, and the next group is chosen the same
    way. Ties go to the lower class index. Returns lists of class indices.
    """
    c = np.asarray(centroids, dtype=np.float64)
    c = c / np.linalg.norm(c, axis=1, keepdims=True)
    sim = c @ c.T
    np.fill_diagonal(sim, -np.inf)
    left, groups = list(range(len(c))), []
    for _ in range(n_groups):
        if len(left) < size:
            raise ValueError(f"{n_groups} groups of {size} need {n_groups * size} classes.")
        sub = sim[np.ix_(left, left)]
        seed = int(np.argmax(sub.max(axis=1)))  # argmax: the first, so the lower index
        near = np.argsort(-sub[seed], kind="stable")[: size - 1]
        group = sorted(left[i] for i in [seed, *near])
        groups.append(group)
        left = [i for i in left if i not in group]
    return groups


def class_centroids(source, model, plan):
    """Frozen, mean-pooled last-layer centroid of each class, from the training split only."""
    from sklearn_ntps import HFEmbeddingTransformer
    from sklearn_ntps.datasets import load_dataset

    data = load_dataset(source, split="train", random_state=SEED)
    y = np.asarray(data.target)
    keep = np.arange(len(y))
    if plan["centroid_texts"] is not None:
        rng = np.random.default_rng([SEED, zlib.crc32(source.encode())])
        keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == k))[
            : plan["centroid_texts"]] for k in np.unique(y)]))
    emb = HFEmbeddingTransformer(model_name_or_path=model, **plan["embedding"]).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the truncation at 64 tokens is the protocol's
        X = np.asarray(emb.transform([data.data[i] for i in keep]), dtype=np.float64)
    return np.stack([X[y[keep] == k].mean(axis=0) for k in range(len(data.target_names))]), \
        data.target_names


def write_groups(plan):
    path = OUT / "groups.json"
    if not path.exists():
        from sklearn_ntps._utils import write_atomic

        out = {}
        for source, n in plan["groups"].items():
            centroids, names = class_centroids(source, plan["centroid_model"], plan)
            for g, group in enumerate(choose_groups(centroids, n, plan["group_size"])):
                out[f"{source}-g{g}"] = [names[i] for i in group]
        write_atomic(path, json.dumps({"centroid_model": plan["centroid_model"],
                                       "groups": out}, indent=1))
    return json.loads(path.read_text())["groups"]


def tasks(plan):
    """``name -> (source, classes or None)``: the whole data sets, then the groups."""
    out = {name: (name, None) for name in plan["whole"]}
    out.update({name: (name.split("-g")[0], classes)
                for name, classes in write_groups(plan).items()})
    return out


def task_texts(name, source, classes, plan):
    """Training and test texts of one task: stratified and seeded, never shared."""
    from sklearn_ntps.datasets import load_dataset

    if classes is None:
        n_train, n_test = plan["whole"][name]
        X, y = load_dataset(source, split="train", n_samples=n_train, random_state=SEED,
                            return_X_y=True)
        X_test, y_test = load_dataset(source, split="test", n_samples=n_test, random_state=SEED,
                                      return_X_y=True)
        return X, np.asarray(y), X_test, np.asarray(y_test)
    rng = np.random.default_rng([SEED, zlib.crc32(name.encode())])
    out = []
    for split in ("train", "test"):
        data = load_dataset(source, split=split, random_state=SEED)
        texts, y = [], []
        for k, cls in enumerate(classes):
            idx = rng.permutation(np.flatnonzero(
                np.asarray(data.target) == data.target_names.index(cls)))
            texts += [data.data[i] for i in np.sort(idx[: plan["per_class"][split]])]
            y += [k] * min(len(idx), plan["per_class"][split])
        out += [texts, np.asarray(y)]
    return tuple(out)


# ----------------------------------------------------------------- one job
def rows_path(task, model):
    return OUT / "rows" / f"{task}__{Path(model).name}.csv"


def job(task, source, classes, model, plan):
    """One (task, model): scores, the probe, LoRA, NTPS after; written atomically, CSV last."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    from sklearn_ntps import HFEmbeddingTransformer
    from sklearn_ntps._utils import csv_text, json_text, write_atomic
    from sklearn_ntps.choice.probe import default_probe
    from sklearn_ntps.choice.protocol import feature_scale, fit_scores, on_probe_footing
    from sklearn_ntps.lora.classifier import HFLoRAClassifier
    from sklearn_ntps.scores.registry import default_scorers
    from sklearn_ntps.splits import stratified_blocks
    from sklearn_ntps.states.models import load_model

    start = time.perf_counter()
    X, y, X_test, y_test = task_texts(task, source, classes, plan)
    blocks = stratified_blocks(y, plan["n_blocks"], random_state=SEED)
    y_blocks = np.concatenate([y[b] for b in blocks])  # on_probe_footing's order of the texts
    scorers = default_scorers()

    def scores(weights):
        """NTPS (and the peers) of the training texts and of each block, on the probe's footing."""
        emb = HFEmbeddingTransformer(model_name_or_path=weights, output="tokens",
                                     **plan["embedding"]).fit()
        parts = [emb.transform([X[i] for i in b]) for b in blocks]
        whole, scale = on_probe_footing(parts)
        per_block = [float(clone(scorers["ntps"]).fit(p.scaled(feature_scale(p.pooled)),
                                                      y[b]).score_)
                     for p, b in zip(parts, blocks)]
        return whole, scale, per_block

    row = {"task": task, "source": source, "model": model, "n_classes": int(np.unique(y).size),
           "n_train": len(X), "n_test": len(X_test)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncation: counted below, the protocol's 64 tokens
        whole, scale, before = scores(model)
        row.update(fit_scores({k: scorers[k] for k in ("ntps", *PEERS)}, whole, y_blocks))
        features = whole.pooled  # the training texts' pooled states, times ``scale``
        cv = StratifiedKFold(3, shuffle=True, random_state=SEED)
        row["probe_cv_accuracy"] = float(cross_val_score(default_probe(), features, y_blocks,
                                                         cv=cv).mean())
        probe = clone(default_probe()).fit(features, y_blocks)
        test = np.asarray(HFEmbeddingTransformer(model_name_or_path=model, **plan["embedding"])
                          .fit().transform(X_test), dtype=np.float64)
        row["probe_C"] = float(np.ravel(probe[-1].C_)[0])
        row["probe_accuracy"] = float(probe.score(test * scale, y_test))
        lora = HFLoRAClassifier(model_name_or_path=model, progress=False, **plan["lora"])
        lora.fit(X, y)
        row["lora_step0_accuracy"] = float(lora.probe_.score(test, y_test))
        row["lora_accuracy"] = float(lora.score(X_test, y_test))
        row["lora_seconds"] = float(lora.fit_time_)
        after_whole, _, after = scores(lora)
        row["ntps_after"] = float(clone(scorers["ntps"]).fit(after_whole, y_blocks).score_)
    low, high = plan["eligible"]
    row.update(eligible=int(low <= row["probe_cv_accuracy"] <= high),
               headroom=1 - row["probe_accuracy"],
               gain=100 * (row["lora_accuracy"] - row["probe_accuracy"]),
               ntps_rise=row["ntps_after"] - row["ntps"])
    for i, (b, a) in enumerate(zip(before, after)):
        row[f"ntps_before_b{i}"], row[f"ntps_after_b{i}"] = b, a
    tok = load_model(model, progress=False).tokenizer
    lengths = np.array([len(ids) for ids in tok(list(X), truncation=False)["input_ids"]])
    row.update(median_tokens=float(np.median(lengths)),
               truncated_share=float(np.mean(lengths > plan["lora"]["max_length"])))
    meta = {**row, "classes": classes, "seconds": time.perf_counter() - start,
            "lora_final_loss": float(np.mean(lora.loss_curve_[-10:])),
            "lora_n_steps": int(lora.n_steps_), "provenance": provenance()}
    path = rows_path(task, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = COLUMNS + [f"ntps_{w}_b{i}" for i in range(plan["n_blocks"])
                         for w in ("before", "after")]
    write_atomic(path.with_suffix(".json"), json_text(meta))
    write_atomic(path, csv_text(columns, [row]))  # last: its presence means done
    return meta


@contextlib.contextmanager
def _blas_one_thread(torch_too):
    """BLAS (and, ``torch_too``, torch) on one thread in this process, as before afterwards.

    OpenBLAS's spinning threads next to torch's OpenMP pool made the probe's L-BFGS ten times
    slower on a busy 2-core machine. threadpoolctl limits only the libraries loaded by then:
    scipy's OpenBLAS comes with the imports below."""
    import scipy.optimize  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    if torch_too:
        torch.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


def run_jobs(plan, workers=1):
    (OUT / "rows").mkdir(parents=True, exist_ok=True)
    todo = [(t, s, c, m) for m in plan["models"] for t, (s, c) in tasks(plan).items()
            if not rows_path(t, m).exists()]
    start = time.perf_counter()

    def report(i, meta):
        print(f"[{i}/{len(todo)}] {meta['task']} / {meta['model']}: {meta['seconds']:.0f} s, "
              f"LoRA {meta['lora_seconds']:.0f} s ({time.perf_counter() - start:.0f} s in all)",
              flush=True)

    def failed(args, exc):  # reported, not retried with other settings; a new run retries
        from sklearn_ntps._utils import write_atomic

        write_atomic(rows_path(args[0], args[3]).with_suffix(".error"), repr(exc))
        print(f"{args[0]} / {args[3]} FAILED: {exc!r}", flush=True)

    if workers == 1:  # in this process
        for i, args in enumerate(todo, 1):
            try:
                report(i, job(*args, plan))
            except Exception as exc:
                failed(args, exc)
        return
    from sklearn_ntps.evidence.provenance import one_thread_worker

    with ProcessPoolExecutor(workers, initializer=one_thread_worker) as pool:
        futures = {pool.submit(job, *args, plan): args for args in todo}
        for i, future in enumerate(as_completed(futures), 1):
            try:
                report(i, future.result())
            except Exception as exc:
                failed(futures[future], exc)


def provenance():
    from sklearn_ntps.evidence.provenance import provenance

    return provenance(OUT, Path(__file__).parent)


def read_rows(folder=OUT):
    from sklearn_ntps.evidence.provenance import study_rows

    return study_rows(folder, ("task", "source", "model"))


def main(argv=None):
    global OUT
    from sklearn_ntps.evidence.provenance import study_parser

    parser = study_parser(__doc__, OUT, workers=1,
                          smoke="three tiny tasks, 3 LoRA steps, every row eligible")
    args = parser.parse_args(argv)
    OUT = args.out
    plan = dict(PLAN)
    if args.smoke:
        plan.update(SMOKE, models=(args.smoke,), centroid_model=args.smoke)
    if not args.tables:
        with _blas_one_thread(torch_too=bool(args.smoke)):
            run_jobs(plan, args.workers)
    _sibling("lora_tables").write_tables(OUT, plan)
    return 0


def _sibling(name):
    from sklearn_ntps.evidence.provenance import study_module

    return study_module(__file__, name)


if __name__ == "__main__":
    sys.exit(main())
