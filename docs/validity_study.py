"""The validity study of docs/validity.md: every score against a tuned, held-out probe.

The population, the caps and the rules are the constants below and section 1
of docs/validity.md, committed before any number of the study existed.

    python docs/validity_study.py            # run what is missing, then every table
    python docs/validity_study.py --tables   # the tables again, from docs/validity/rows/

Each (data set, model) job writes ``docs/validity/rows/<data set>__<model>.csv``
when it finishes, so a killed run resumes where it stopped. Two jobs run at a
time, one thread each (this machine has 2 cores). ``tables`` writes
``docs/validity/study.json`` and ``docs/validity/tables.md``.
"""

from __future__ import annotations

import csv
import itertools
import json
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "validity"
MODELS = ("SmolLM2-135M", "all-MiniLM-L6-v2", "all-mpnet-base-v2")
DATASETS = ("banking77", "clinc150", "sms_spam", "trec", "rotten_tomatoes",
            "twenty_newsgroups", "dbpedia", "yahoo_answers", "mcid", "x_topic")
# The caps of the protocol (docs/validity.md, section 1).
POOL = {"n_texts": 1200, "min_per_class": 30, "max_classes": 40}
EMBEDDING = {"max_length": 64, "batch_size": 16, "cache": False}
PARTITIONS = {"n_blocks": 10, "n_test_blocks": 3, "n_replicates": 3}
SEED = 0
# Rule A's grid, and the authors' sweep of k for the paper's protocol.
KS = (0.05, 0.1, 0.25, 0.5)
PAPER_KS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.95)
SETUPS = list(itertools.product((False, True), (None, "ledoit-wolf")))
CURRENT = {"variant": "whitened", "centering": False, "shrinkage": None, "k": 0.25}
MARGIN = 0.05


# ----------------------------------------------------------------- the columns
def config_name(variant, centering, shrinkage, k):
    return f"{variant}|c={int(centering)}|s={shrinkage or 'none'}|k={k}"


def configs():
    for (centering, shrinkage), variant, k in itertools.product(SETUPS, ("paper", "whitened"), KS):
        yield {"variant": variant, "centering": centering, "shrinkage": shrinkage, "k": k}


def paper_name(k):
    return f"paper_exact|k={k}"


# The report's NTPS columns (default_scorers) as configurations of the grid.
NTPS_COLUMNS = {"ntps": config_name(**CURRENT),
                "ntps_paper": config_name(**{**CURRENT, "variant": "paper"}),
                "ntps_paper_exact": paper_name(0.25)}


def ntps_columns(moments, y):
    """Rule A's 32 configurations and the paper's exact score at the authors' k sweep."""
    from sklearn_ntps.checks import encode_labels
    from sklearn_ntps.scores.ntps import fit_ntps, make_options, resolve_n_components

    classes, yi = encode_labels(y)
    d, row = moments.n_features, {}
    for centering, shrinkage in SETUPS:
        options = make_options(centering=centering, shrinkage=shrinkage,
                               precision=moments.precision)
        fit = fit_ntps(moments, yi, len(classes), options=options)
        for variant in ("paper", "whitened"):
            curve = fit.curve(variant)
            for k in KS:
                row[config_name(variant, centering, shrinkage, k)] = float(
                    curve[resolve_n_components(k, d) - 1])
    exact = fit_ntps(moments, yi, len(classes),
                     options=make_options(rtol=0.0, precision=moments.precision)).curve("paper")
    for k in PAPER_KS:
        row[paper_name(k)] = float(exact[resolve_n_components(k, d) - 1])
    # The report's three NTPS columns are among these: taken from them, not fitted again.
    for column, name in NTPS_COLUMNS.items():
        row[column] = row[name]
    return row


def scorers():
    """The report's scorers but its NTPS columns, which :func:`ntps_columns` gives."""
    from sklearn_ntps.scores.registry import default_scorers

    return {k: v for k, v in default_scorers().items() if k not in NTPS_COLUMNS}


# ----------------------------------------------------------------- the jobs
def pool(dataset):
    """The study's texts of one data set: study_pool of every text it has."""
    from sklearn_ntps.choice.protocol import study_pool
    from sklearn_ntps.datasets import load_dataset

    data = load_dataset(dataset, split="all", random_state=SEED)
    idx = study_pool(data.target, **POOL, random_state=[SEED, zlib.crc32(dataset.encode())])
    return [data.data[i] for i in idx], np.asarray(data.target)[idx]


def rows_path(dataset, model):
    return OUT / "rows" / f"{dataset}__{Path(model).name}.csv"


def job(dataset, model):
    """One (data set, model): every layer, replicate, score and probe; written atomically."""
    from sklearn_ntps._utils import csv_text, write_atomic
    from sklearn_ntps.evidence.report import run_report
    from sklearn_ntps.states.models import load_model

    start = time.perf_counter()
    texts, y = pool(dataset)
    report = run_report([model], {dataset: (texts, y)}, scorers=scorers(), random_state=SEED,
                        embedding_params=EMBEDDING, extra_columns=ntps_columns, progress=False,
                        **PARTITIONS)
    tok = load_model(model, progress=False).tokenizer
    lengths = np.array([len(ids) for ids in tok(texts, truncation=False)["input_ids"]])
    meta = {"dataset": dataset, "model": model, "seconds": time.perf_counter() - start,
            "n_texts": len(texts), "n_classes": int(np.unique(y).size),
            "n_train": report.datasets[dataset]["n_train"],
            "median_tokens": float(np.median(lengths)),
            "truncated_share": float(np.mean(lengths > EMBEDDING["max_length"])),
            "provenance": provenance()}
    path = rows_path(dataset, model)
    write_atomic(path.with_suffix(".json"), json.dumps(meta, indent=1))
    write_atomic(path, csv_text(report.columns, report.rows))  # last: its presence means done
    return meta


def stability(model="SmolLM2-135M"):
    """Rule A, step 1: each configuration's largest relative move under 1e-6 noise."""
    from sklearn_ntps import HFEmbeddingTransformer
    from sklearn_ntps.choice.protocol import feature_scale
    from sklearn_ntps.datasets import load_dataset
    from sklearn_ntps.evidence.study import perturb_moments

    data = load_dataset("banking77", split="train", n_samples=120, random_state=0)
    emb = HFEmbeddingTransformer(model_name_or_path=model, output="tokens", progress=False,
                                 cache=False).fit()
    moments = emb.set_params(layer=emb.n_layers_ // 2).transform(data.data)
    moments = moments.scaled(feature_scale(moments.pooled))
    base = ntps_columns(moments, data.target)
    worst = dict.fromkeys(base, 0.0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        noisy = ntps_columns(perturb_moments(moments, 1e-6, rng), data.target)
        for key in base:
            worst[key] = max(worst[key], abs(noisy[key] - base[key]) / max(base[key], 1e-12))
    return worst


def run_jobs(models=MODELS, datasets=DATASETS, workers=2):
    (OUT / "rows").mkdir(parents=True, exist_ok=True)
    if not (OUT / "stability.json").exists():
        from sklearn_ntps._utils import write_atomic

        write_atomic(OUT / "stability.json", json.dumps(stability(models[0]), indent=1))
    # Largest first (SmolLM2's 31 layers, long texts), so the two workers end together.
    todo = [(d, m) for m in models for d in datasets if not rows_path(d, m).exists()]
    start = time.perf_counter()

    def report(i, meta):
        print(f"[{i}/{len(todo)}] {meta['dataset']} / {meta['model']}: {meta['seconds']:.0f} s "
              f"({time.perf_counter() - start:.0f} s in all)", flush=True)

    if workers == 1:  # in this process: for a dry run and for debugging
        for i, (d, m) in enumerate(todo, 1):
            report(i, job(d, m))
        return
    from sklearn_ntps.evidence.provenance import one_thread_worker

    with ProcessPoolExecutor(workers, initializer=one_thread_worker) as pool_:
        futures = [pool_.submit(job, d, m) for d, m in todo]
        for i, future in enumerate(as_completed(futures), 1):
            report(i, future.result())


# ----------------------------------------------------------------- the tables
def main(argv=None):
    global OUT
    from sklearn_ntps.evidence.provenance import study_parser

    parser = study_parser(__doc__, OUT, workers=2, smoke="three data sets and 200 texts each")
    args = parser.parse_args(argv)
    OUT = args.out
    models, datasets = MODELS, DATASETS
    if args.smoke:
        models, datasets = (args.smoke,), ("sms_spam", "trec", "banking77")
        POOL.update(n_texts=200, min_per_class=10, max_classes=6)
    if not args.tables:
        run_jobs(models, datasets, args.workers)
    _sibling("validity_tables").write_tables(OUT)
    return 0


def provenance():
    from sklearn_ntps.evidence.provenance import provenance

    return provenance(OUT, Path(__file__).parent)


def read_rows(folder=OUT):
    rows = []
    for path in sorted((folder / "rows").glob("*.csv")):
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                rows.append({k: v if k in ("model", "dataset") else
                             int(v) if k in ("layer", "replicate") else
                             v == "True" if k == "within_noise" else float(v)
                             for k, v in r.items()})
    return rows


def _sibling(name):
    from sklearn_ntps.evidence.provenance import study_module

    return study_module(__file__, name)


if __name__ == "__main__":
    sys.exit(main())
