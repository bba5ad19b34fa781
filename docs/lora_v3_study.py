"""LoRA study v3 of docs/lora_v3_plan.md: does NTPS on the frozen model say how much LoRA gains
over its own start, at 1,000 training texts per task, on 24 tasks from 10 sources?

The population, the outcome, the predictors, the analysis and the budget are the constants
below and docs/lora_v3_plan.md, committed before any number of the study existed.

    python docs/lora_v3_study.py --workers 2      # run what is missing (2 h budget), then tables
    python docs/lora_v3_study.py --tables         # the tables again, from docs/lora_v3/rows/

First the task rule writes ``docs/lora_v3/tasks.json``: each source's classes permuted by a
seeded generator and dealt into groups (:func:`deal_groups`), with the indices of every task's
texts. Then each (task, model, arm) job writes ``docs/lora_v3/rows/<task>__<model>__<arm>``
``.json``, ``.npz`` and, last, ``.csv`` when it finishes, so a killed run resumes where it
stopped. ``arm`` is ``real`` (the labels) or ``shuffled`` (the control of the plan's section 8).
"""

from __future__ import annotations

import json
import time
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "lora_v3"
SEED = 0
PLAN = {
    # In order of priority (the plan's section 2): SmolLM2 only in a separate, later run.
    "models": ("all-MiniLM-L6-v2",),
    # source -> number of class groups (0: the whole data set is one task); 24 tasks.
    "sources": {"clinc150": 5, "banking77": 4, "dbpedia": 4, "twenty_newsgroups": 3,
                "yahoo_answers": 2, "x_topic": 2, "mcid": 0, "rotten_tomatoes": 0,
                "sms_spam": 0, "trec": 0},
    "n_train": 1000,
    "n_test": 400,
    # HFLoRAClassifier's defaults otherwise: head from the probe on its footing, at most 10
    # passes, early stopping on 10% of the training texts (3 evaluations without gain).
    "lora": {"random_state": SEED, "max_length": 64},
    "embedding": {"max_length": 64, "batch_size": 16, "cache": False, "progress": False},
    "n_permutations": 30,
    "budget_s": 7200,  # no job starts after this many seconds of the run
}
SMOKE = {"sources": {"banking77": 2, "sms_spam": 0}, "n_train": 40, "n_test": 20,
         "lora": {"random_state": SEED, "max_length": 16, "max_steps": 2},
         "n_permutations": 3, "budget_s": 600}
PEERS = ("logme", "knn", "ridge_loo")
ARMS = ("real", "shuffled")
COLUMNS = ["task", "source", "model", "arm", "n_classes", "n_train", "n_test",
           "start_accuracy", "lora_accuracy", "gain", "wins", "losses", "mcnemar_p", "headroom",
           "probe_C", "start_loss", "n_steps", "best_step", "ntps", "ntps_chance",
           "ntps_minus_chance", *[f"{p}{s}" for p in PEERS for s in ("", "_chance")],
           "ntps_test_before", "ntps_test_before_chance", "ntps_test_after",
           "ntps_test_after_chance", "ntps_rise", "ntps_after_h0", "ntps_after_h1",
           "ntps_before_h0", "ntps_before_h1", "lora_seconds", "seconds"]


# ----------------------------------------------------------------- the task rule
def deal_groups(n_classes, n_groups, source):
    """The plan's rule: the classes permuted by ``default_rng([0, crc32(source)])``, dealt into
    ``n_groups`` consecutive groups of ``n_classes // n_groups``; the rest unused."""
    if n_groups == 0:
        return [list(range(n_classes))]
    order = np.random.default_rng([SEED, zlib.crc32(source.encode())]).permutation(n_classes)
    size = n_classes // n_groups
    return [sorted(order[g * size:(g + 1) * size].tolist()) for g in range(n_groups)]


def _subset(y, classes, n, seed_key):
    """``n`` indices of the texts of ``classes``, stratified and seeded (the plan's section 1)."""
    from sklearn_ntps.splits import stratified_split

    idx = np.flatnonzero(np.isin(y, classes))
    if len(idx) < n:
        raise ValueError(f"{seed_key}: {len(idx)} texts, {n} needed")
    return np.sort(idx[stratified_split(y[idx], n, random_state=SEED)[0]])


def write_tasks(plan):
    """``tasks.json``: every task's source, classes and text indices, before any model runs."""
    path = OUT / "tasks.json"
    if path.exists():
        return json.loads(path.read_text())
    from sklearn_ntps._utils import write_atomic
    from sklearn_ntps.datasets import load_dataset

    out = {}
    for source, n_groups in plan["sources"].items():
        splits = {s: load_dataset(source, split=s, random_state=SEED) for s in ("train", "test")}
        names = list(splits["train"].target_names)
        for g, classes in enumerate(deal_groups(len(names), n_groups, source)):
            task = source if n_groups == 0 else f"{source}-g{g}"
            out[task] = {"source": source, "classes": [names[c] for c in classes],
                         **{s: _subset(np.asarray(d.target), classes, plan[f"n_{s}"],
                                       task).tolist() for s, d in splits.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(out, indent=1))
    return out


def task_texts(task, spec):
    """Training and test texts of a task, labels coded 0 .. K-1 in the order of its classes."""
    from sklearn_ntps.datasets import load_dataset

    out = []
    for split in ("train", "test"):
        data = load_dataset(spec["source"], split=split, random_state=SEED)
        names = list(data.target_names)
        code = {names.index(c): k for k, c in enumerate(spec["classes"])}
        out += [[data.data[i] for i in spec[split]],
                np.array([code[int(data.target[i])] for i in spec[split]])]
    return tuple(out)


# ----------------------------------------------------------------- one job
def rows_path(task, model, arm):
    return OUT / "rows" / f"{task}__{Path(model).name}__{arm}.csv"


def shuffled_labels(y, task):
    return y[np.random.default_rng([1, zlib.crc32(task.encode())]).permutation(len(y))]


def ntps_on(weights, texts, y, plan, halves=None):
    """NTPS of ``texts`` with their true labels, on their own footing, with its chance level;
    and on each of ``halves`` (index arrays), without chance."""
    from sklearn.base import clone

    from sklearn_ntps import HFEmbeddingTransformer
    from sklearn_ntps.choice.protocol import on_probe_footing
    from sklearn_ntps.scores.registry import default_scorers

    emb = HFEmbeddingTransformer(model_name_or_path=weights, output="tokens",
                                 **plan["embedding"]).fit()
    ntps = default_scorers()["ntps"]
    parts = [emb.transform([texts[i] for i in h]) for h in halves]
    whole, _ = on_probe_footing(parts)
    order = np.concatenate(halves)
    fitted = clone(ntps).set_params(n_permutations=plan["n_permutations"]).fit(whole, y[order])
    per_half = [float(clone(ntps).set_params(n_permutations=0).fit(
        on_probe_footing([p])[0], y[h]).score_) for p, h in zip(parts, halves)]
    return float(fitted.score_), float(fitted.chance_), per_half


def job(task, spec, model, arm, plan):
    """One (task, model, arm), written atomically, CSV last (the plan's sections 3, 4 and 8)."""
    from scipy.stats import binomtest

    from sklearn_ntps._utils import csv_text, write_atomic
    from sklearn_ntps.choice.protocol import fit_scores, on_probe_footing
    from sklearn_ntps.lora.classifier import HFLoRAClassifier
    from sklearn_ntps.scores.registry import default_scorers
    from sklearn_ntps.splits import stratified_split

    start = time.perf_counter()
    X, y, X_test, y_test = task_texts(task, spec)
    halves = list(stratified_split(y_test, len(y_test) // 2, random_state=SEED))
    row = {"task": task, "source": spec["source"], "model": model, "arm": arm,
           "n_classes": int(np.unique(y).size), "n_train": len(X), "n_test": len(X_test)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncation at the protocol's 64 tokens
        if arm == "real":
            from sklearn_ntps import HFEmbeddingTransformer

            emb = HFEmbeddingTransformer(model_name_or_path=model, output="tokens",
                                         **plan["embedding"]).fit()
            whole, _ = on_probe_footing([emb.transform(X)])
            scorers = {k: v.set_params(n_permutations=plan["n_permutations"])
                       for k, v in default_scorers().items() if k in ("ntps", *PEERS)}
            row.update(fit_scores(scorers, whole, y, chance=True))
            row["ntps_minus_chance"] = row["ntps"] - row["ntps_chance"]
            b, bc, bh = ntps_on(model, X_test, y_test, plan, halves)
            row.update(ntps_test_before=b, ntps_test_before_chance=bc, ntps_before_h0=bh[0],
                       ntps_before_h1=bh[1])
        labels = y if arm == "real" else shuffled_labels(y, task)
        lora = HFLoRAClassifier(model_name_or_path=model, progress=False, **plan["lora"])
        lora.fit(X, labels)
        after = lora.predict(X_test)
        first = lora.predict_start(X_test)
        a, ac, ah = ntps_on(lora, X_test, y_test, plan, halves)
    lora_ok, start_ok = after == y_test, first == y_test
    wins, losses = int(np.sum(lora_ok & ~start_ok)), int(np.sum(~lora_ok & start_ok))
    row.update(start_accuracy=float(start_ok.mean()), lora_accuracy=float(lora_ok.mean()),
               gain=100 * float(lora_ok.mean() - start_ok.mean()), wins=wins, losses=losses,
               mcnemar_p=binomtest(wins, wins + losses).pvalue if wins + losses else 1.0,
               headroom=1 - float(start_ok.mean()), probe_C=lora.probe_C_,
               start_loss=lora.start_loss_, n_steps=lora.n_steps_, best_step=lora.best_step_,
               ntps_test_after=a, ntps_test_after_chance=ac, ntps_after_h0=ah[0],
               ntps_after_h1=ah[1], lora_seconds=lora.fit_time_)
    if arm == "real":
        row["ntps_rise"] = a - row["ntps_test_before"]
    row["seconds"] = time.perf_counter() - start
    path = rows_path(task, model, arm)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path.with_suffix(".tmp.npz"), y_test=y_test, lora=after, start=first,
             validation_indices=lora.validation_indices_,
             validation_start=lora.validation_start_predictions_,
             validation_lora=lora.validation_predictions_)
    path.with_suffix(".tmp.npz").replace(path.with_suffix(".npz"))
    meta = {**row, "classes": spec["classes"], "texts_sha256": _texts_hash(X, X_test),
            "lora_final_loss": float(np.mean(lora.loss_curve_[-10:])),
            "provenance": provenance()}
    write_atomic(path.with_suffix(".json"), json.dumps(meta, indent=1, default=float))
    write_atomic(path, csv_text(COLUMNS, [{c: row.get(c, "") for c in COLUMNS}]))
    return meta


def _texts_hash(*texts):
    import hashlib

    digest = hashlib.sha256()
    for group in texts:
        for t in group:
            digest.update(t.encode() + b"\0")
    return digest.hexdigest()


# ----------------------------------------------------------------- the run
def todo(plan):
    """Every job not on disk: each model's real arm in the tasks' order, then its shuffled arm
    in a seeded order of the tasks (the plan's section 9)."""
    tasks = write_tasks(plan)
    names = list(tasks)
    out = []
    for model in plan["models"]:
        out += [(t, model, "real") for t in names]
        out += [(names[i], model, "shuffled")
                for i in np.random.default_rng(SEED).permutation(len(names))]
    return [(t, tasks[t], m, a) for t, m, a in out if not rows_path(t, m, a).exists()]


def run_jobs(plan, workers=1):
    jobs, start = todo(plan), time.perf_counter()

    def report(i, meta):
        print(f"[{i}/{len(jobs)}] {meta['task']} / {meta['model']} / {meta['arm']}: gain "
              f"{meta['gain']:+.1f}, {meta['seconds']:.0f} s ({time.perf_counter() - start:.0f} "
              "s in all)", flush=True)

    def failed(args, exc):  # reported, never retried with other settings
        from sklearn_ntps._utils import write_atomic

        write_atomic(rows_path(args[0], args[2], args[3]).with_suffix(".error"), repr(exc))
        print(f"{args[0]} / {args[2]} / {args[3]} FAILED: {exc!r}", flush=True)

    def started():
        return time.perf_counter() - start < plan["budget_s"]

    queue = list(jobs)
    if workers == 1:  # in this process
        while queue and started():
            args = queue.pop(0)
            try:
                report(len(jobs) - len(queue), job(*args, plan))
            except Exception as exc:
                failed(args, exc)
    else:
        from sklearn_ntps.evidence.provenance import one_thread_worker

        with ProcessPoolExecutor(workers, initializer=one_thread_worker) as pool:
            running, done = {}, 0
            while queue or running:
                while queue and len(running) < workers and started():
                    args = queue.pop(0)
                    running[pool.submit(job, *args, plan)] = args
                if not running:
                    break
                future = next(as_completed(running))
                args = running.pop(future)
                done += 1
                try:
                    report(done, future.result())
                except Exception as exc:
                    failed(args, exc)
    for args in queue:
        print(f"{args[0]} / {args[2]} / {args[3]}: not started, the budget is spent", flush=True)


def provenance():
    from sklearn_ntps.evidence.provenance import provenance

    return provenance(OUT, Path(__file__).parent)


def read_rows(folder=OUT):
    from sklearn_ntps.evidence.provenance import study_rows

    return study_rows(folder, ("task", "source", "model", "arm"))


def main(argv=None):
    global OUT
    from sklearn_ntps.evidence.provenance import study_parser

    parser = study_parser(__doc__, OUT, workers=2, smoke="two tiny tasks, 2 LoRA steps")
    parser.add_argument("--model", action="append",
                        help="run these models instead of PLAN's (the plan's section 2: "
                             "SmolLM2-135M in a separate run)")
    args = parser.parse_args(argv)
    OUT = args.out
    plan = dict(PLAN)
    if args.smoke:
        plan.update(SMOKE, models=(args.smoke,))
    elif args.model:
        plan["models"] = tuple(args.model)
    if not args.tables:
        run_jobs(plan, args.workers)
    _sibling("lora_v3_tables").write_tables(OUT)
    return 0


def _sibling(name):
    from sklearn_ntps.evidence.provenance import study_module

    return study_module(__file__, name)


if __name__ == "__main__":
    raise SystemExit(main())
