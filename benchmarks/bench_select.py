"""sklearn-ntps select against transformer-ranker, side by side (issue 15, part 3).

Both tools score every layer of one model on the same BANKING77 texts with the same
estimator (H-score or LogME), pick the best layer, and run as separate processes on this
machine. Printed per (texts, estimator): the wall time of each process (interpreter start
to exit), the ratio peer / ours, each process's peak RSS (``os.wait4``) and its ratio, the
mean time to score one layer on each side, and each side's pick. Where our time goes
(imports, model load, forward pass + moments, statistics store, scoring) is printed below
the table.

transformer-ranker 0.2.0 is installed in its own virtual environment (``--venv``) on first
use: torch==2.13.0 first, then the ranker with torch pinned so pip cannot swap it for a
CUDA build. It gets the model as a local folder (SmolLM2's de-quantised float32 copy from
this library's model cache; the same weights our side loads), and the texts as a
``datasets.Dataset`` built in memory. Our side runs ``sklearn-ntps select`` in-process
(``cli.main``) with the statistics store pointed at an empty folder, so both runs are cold.

    HF_HUB_OFFLINE=1 python benchmarks/bench_select.py --n-texts 600 3000 \
        --estimator hscore logme [--explain] [--venv PATH]

--bf16 adds a fourth side, ``select --torch-dtype bfloat16``, and says whether its pick lies
in the float32 full run's "cannot be told apart" set. --together ranks all the --model's in
one run on each side (for each --aggregate: best-layer, layer-mean), the peer with its own
aggregators (``bestlayer``, ``layermean``: the score of the mean over layers, where ours is the
mean of the layers' scores), and prints the picked model of each:

    HF_HUB_OFFLINE=1 python benchmarks/bench_select.py --together --n-texts 3000 \
        --model SmolLM2-135M all-MiniLM-L6-v2 all-mpnet-base-v2 --estimator hscore \
        --aggregate best-layer layer-mean

Every run is printed as it ends (side, wall time, peak memory, pick).

--explain also rescores the peer's own pooled features with our scorer, raw and rescaled by
1/sd (our "probe footing"), to tell a different pick's causes apart: the estimator, the
footing, or the pooling. Timings are only as clean as the machine is quiet.

Layer numbers are hidden-state indices (0 = embeddings). transformer-ranker skips the
embeddings and counts the first block as its layer 0, so its layer i is our i + 1.
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve()
PEER = "transformer-ranker==0.2.0"
TORCH = "torch==2.13.0"


def timed(owner, attr, phases, key, calls=None):
    """Wrap ``owner.attr`` so its time adds up in ``phases[key]`` (and each call in ``calls``)."""
    original = getattr(owner, attr)

    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return original(*a, **k)
        finally:
            dt = time.perf_counter() - t
            phases[key] += dt
            if calls is not None:
                calls.append(dt)
    setattr(owner, attr, wrapper)


def child_peer(job):
    """transformer-ranker's side, in its own venv: every layer, no downsampling."""
    t0 = time.perf_counter()
    from datasets import Dataset
    from transformer_ranker import TransformerRanker, embedder, ranker
    from transformer_ranker.estimators import HScore, LogME
    phases, fits, scores = defaultdict(float), [], []
    phases["imports"] = time.perf_counter() - t0
    timed(embedder.Embedder, "__init__", phases, "load")  # twice: _preload_models loads it too
    timed(embedder.Embedder, "embed", phases, "forward")
    timed(ranker.TransformerRanker, "_transferability_score", phases, "scoring")
    for cls in (HScore, LogME):  # one fit per layer: record its time and its score
        fit = cls.fit

        def fit_and_keep(self, embeddings, *a, _fit=fit, **k):
            t = time.perf_counter()
            scores.append(_fit(self, embeddings, *a, **k))
            fits.append(time.perf_counter() - t)
            if job["explain"]:  # the layer's pooled features, for main() to rescore (untimed)
                import numpy as np
                np.save(f"{job['out']}-peer-layer{len(scores)}.npy", embeddings.numpy())
            return scores[-1]
        cls.fit = fit_and_keep
    data = Dataset.from_dict({"text": job["texts"], "label": job["labels"]})
    tr = TransformerRanker(data, dataset_downsample=None, text_column="text",
                           label_column="label")
    paths = job["peer_models"]
    aggregator = {"best-layer": "bestlayer", "layer-mean": "layermean"}[job["aggregate"]]
    result = tr.run(models=paths, estimator=job["estimator"], layer_aggregator=aggregator,
                    batch_size=job["batch_size"], device="cpu")
    best = max(range(len(scores)), key=scores.__getitem__)
    # The peer names a model by its folder's last part; ours by the name it was given.
    model = next(i for i, path in enumerate(paths) if path.rstrip("/").endswith(
        result.best_model()))
    return {"n_used": len(tr.texts), "layer": best + 1, "scores": scores, "fits": fits,
            "model": model, "phases": phases, "total": time.perf_counter() - t0}


def child_ours(job):
    """Our side: ``sklearn-ntps select`` on a JSON-lines file, in-process to time its parts."""
    t0 = time.perf_counter()
    from sklearn_ntps import cli
    from sklearn_ntps.choice import racing, selection
    from sklearn_ntps.states import embedding
    phases, layer_times, block_times, kept = defaultdict(float), [], [], {}
    phases["imports"] = time.perf_counter() - t0
    timed(embedding, "load_model", phases, "load")  # the first call loads, later ones hit memo
    timed(embedding, "extract_statistics", phases, "forward")
    timed(embedding.HFEmbeddingTransformer, "_extract", phases, "stats")
    timed(racing, "whole_score", phases, "scoring", layer_times)
    timed(racing, "block_score", phases, "scoring", block_times)
    fit = selection.LayerSelector.fit

    def fit_and_keep(self, *a, **k):
        kept["selector"] = self
        return fit(self, *a, **k)
    selection.LayerSelector.fit = fit_and_keep
    models = job["models"]
    argv = ["select", "--data", job["data"], *[a for m in models for a in ("--model", m)],
            "--score", job["estimator"], "--aggregate", job["aggregate"],
            "--no-plot", "--no-progress", "--batch-size", str(job["batch_size"]),
            "--output-dir", job["out"], "--torch-dtype", job.get("dtype", "auto"),
            *(["--no-racing"] if job.get("no_racing") else [])]
    if cli.main(argv) != 0:
        raise SystemExit("sklearn-ntps select failed")
    sel = kept["selector"]
    scores = sel.scores_[models[0]]
    within = [r["layer"] for r in sel.results_ if r["within_noise"]]
    within_models = sorted({models.index(r["model"]) for r in sel.results_
                            if r["within_noise"]})
    return {"n_used": len(job["texts"]), "layer": int(sel.best_layer_),
            "model": models.index(sel.best_model_), "within_models": within_models,
            "layers": list(map(int, sel.layers_[models[0]])), "scores": scores.tolist(),
            "layer_times": layer_times, "whole_fits": layer_times, "block_fits": block_times,
            "racing": sel.racing_, "within_noise": within,
            "phases": phases, "total": time.perf_counter() - t0}


def run_side(python, side, job, tmp, env):
    """One side in a fresh process; its wall time and peak RSS as the parent sees them."""
    job_file, out_file = tmp / f"{side}-job.json", tmp / f"{side}-out.json"
    job_file.write_text(json.dumps(job))
    log = open(tmp / f"{side}.log", "w")
    start = time.perf_counter()
    proc = subprocess.Popen([str(python), str(HERE), "--child", side, str(job_file),
                             str(out_file)], stdout=log, stderr=subprocess.STDOUT, env=env)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not all children's
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{side} failed (exit {proc.returncode}); see {log.name}:\n"
                         + Path(log.name).read_text()[-3000:])
    out = json.loads(out_file.read_text())
    out.update(wall=wall, rss_mb=usage.ru_maxrss / 1024)  # ru_maxrss is in KiB on Linux
    return out


def best(runs):
    """The run of least wall time, with the lowest peak memory of all the runs."""
    out = dict(min(runs, key=lambda r: r["wall"]))
    out["rss_mb"] = min(r["rss_mb"] for r in runs)
    return out


def ensure_venv(venv):
    """transformer-ranker in its own venv; torch first, then pinned so pip keeps it."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    have = subprocess.run([str(python), "-m", "pip", "show", "transformer-ranker"],
                          capture_output=True, text=True).stdout
    if "Version: 0.2.0" not in have:
        print(f"Installing {PEER} into {venv} ...", file=sys.stderr)
        pin = venv / "constraints.txt"
        pin.write_text(TORCH + "\n")
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, TORCH], check=True)
        subprocess.run([*pip, PEER, "-c", str(pin)], check=True)
    return python


def peer_model_path(name):
    """A local folder for transformer-ranker: a GGUF model's float32 copy, else its folder."""
    from sklearn_ntps.states.models import _dequantized_copy, resolve_model
    resolved = resolve_model(name)
    return str(_dequantized_copy(resolved, False, False) if resolved.gguf_file else resolved.path)


def cold_cache(tmp):
    """An empty statistics store that still finds the de-quantised and assembled models."""
    import shutil

    from sklearn_ntps._utils import cache_dir
    from sklearn_ntps.states import cache
    root = tmp / "ntps-cache"
    if root.exists():  # again: empty the statistics store, keep the links to the models
        shutil.rmtree(root / cache.FOLDER, ignore_errors=True)
        return root
    root.mkdir()
    for sub in ("dequantized", "assembled"):
        if (cache_dir() / sub).exists():
            (root / sub).symlink_to(cache_dir() / sub)
    return root


def explain(job, peer):
    """Our scorer on the peer's own features: raw, then rescaled by 1/sd as ours reads them.

    If 'raw' agrees with the peer's pick the two estimators agree, and 'scaled' shows what
    the probe footing alone changes; what is left is the pooling."""
    import numpy as np

    from sklearn_ntps.choice.protocol import feature_scale
    from sklearn_ntps.scores.registry import default_scorers
    picks = {}
    for footing in ("raw", "scaled"):
        scores = []
        for i in range(1, len(peer["scores"]) + 1):
            X = np.load(f"{job['out']}-peer-layer{i}.npy").astype(float)
            X = X * feature_scale(X) if footing == "scaled" else X
            scores.append(default_scorers()[job["estimator"]].fit(X, job["labels"]).score_)
        picks[footing] = int(np.nanargmax(scores)) + 1
    return picks


def spearman(a, b):
    import numpy as np
    from scipy.stats import spearmanr
    return float(spearmanr(np.asarray(a), np.asarray(b)).statistic)


def alternate(args, peer_python, job, tmp, env, sides=("peer", "ours", "full")):
    """Every side ``args.repeat`` times, in alternating order, each run cold; every run printed."""
    extras = {"peer": {}, "ours": {}, "full": {"no_racing": True}, "bf16": {"dtype": "bfloat16"}}
    sides = [*sides, *(["bf16"] if args.bf16 else [])]
    runs = defaultdict(list)
    for rep in range(args.repeat):
        for side in (sides if rep % 2 == 0 else sides[::-1]):
            python = peer_python if side == "peer" else sys.executable
            out = run_side(python, "peer" if side == "peer" else "ours",
                           {**job, **extras[side]}, tmp, env)
            runs[side].append(out)
            print(f"run {rep + 1} {side:<5} {out['wall']:7.1f} s {out['rss_mb']:6.0f} MB  pick "
                  f"model {out.get('model', 0)} layer {out['layer']}", flush=True)
            cold_cache(tmp)  # every run cold
    return runs


def banking77(n):
    """``n`` BANKING77 texts and their labels, the same for every run."""
    from sklearn_ntps.datasets import load_dataset
    d = load_dataset("banking77", split="all", n_samples=n, random_state=0)
    return list(d.data), [int(v) for v in d.target]


def prepared(tmp, texts, labels):
    """The texts as a JSON-lines file, and the environment both sides run in (a cold store)."""
    data = tmp / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n"
                            for t, y in zip(texts, labels)))
    # Same threads for both. TQDM_DISABLE silences our bars; the peer passes disable= itself,
    # so its bars go to its log (a few ms).
    return data, dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                      TQDM_DISABLE="1", SKLEARN_NTPS_CACHE=str(cold_cache(tmp)))


def measure(args, peer_python):
    """Every comparison the arguments ask for: ``(n, models, estimator, aggregate, runs)``.

    ``models`` is every --model at once with --together, else one at a time."""
    groups = [args.model] if args.together else [[m] for m in args.model]
    aggregates = args.aggregate if args.together else ["best-layer"]
    for n in args.n_texts:
        texts, labels = banking77(n)
        for models, est, aggregate in itertools.product(groups, args.estimator, aggregates):
            with tempfile.TemporaryDirectory(prefix="bench-select-") as tmp:
                tmp = Path(tmp)
                data, env = prepared(tmp, texts, labels)
                job = {"texts": texts, "labels": labels, "estimator": est, "models": models,
                       "aggregate": aggregate,
                       "peer_models": [peer_model_path(m) for m in models],
                       "batch_size": args.batch_size, "data": str(data),
                       "out": str(tmp / "out"), "explain": args.explain}
                # layer-mean scores every pair, so its racing side is its full side.
                sides = ("peer", "ours", "full") if aggregate == "best-layer" else ("peer", "ours")
                runs = {k: best(v) for k, v in
                        alternate(args, peer_python, job, tmp, env, sides).items()}
                if args.explain:
                    runs["peer"]["explain"] = explain(job, runs["peer"])
            print(f"done: n={n} {models} {est} {aggregate}", file=sys.stderr, flush=True)
            yield n, models, est, aggregate, runs


def print_together(args, rows):
    """One line per side of each comparison of models ranked together."""
    print(f"\nModels ranked together: {', '.join(args.model)} (indices 0..). Best of "
          f"{args.repeat} cold processes, alternating; ratios transformer-ranker / ours.")
    for n, _, est, aggregate, sides in rows:
        peer = sides["peer"]
        for name, side in sides.items():
            if name == "peer":
                continue
            racing = side.get("racing") or {}
            print(f"{n:>5} {est:<6} {aggregate:<10} {name:<5} {side['wall']:7.1f} s "
                  f"({peer['wall'] / side['wall']:.2f}x; peer {peer['wall']:.1f} s) "
                  f"{side['rss_mb']:6.0f} MB (peer {peer['rss_mb']:.0f}) pick model "
                  f"{side['model']} (peer {peer['model']}; not told apart: "
                  f"{side['within_models']}) blocks read {racing.get('block_passes')}/"
                  f"{racing.get('block_passes_without_racing')}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-texts", type=int, nargs="+", default=[600, 3000])
    p.add_argument("--estimator", nargs="+", choices=["hscore", "logme"],
                   default=["hscore", "logme"])
    p.add_argument("--model", nargs="+", default=["SmolLM2-135M"])
    p.add_argument("--batch-size", type=int, default=32, help="both sides (the peer's default)")
    p.add_argument("--venv", type=Path,
                   default=Path.home() / ".cache" / "sklearn-ntps-bench" / "venv-tr",
                   help="transformer-ranker's virtual environment (made if missing)")
    p.add_argument("--explain", action="store_true", help="also score the peer's features "
                   "with our scorer, raw and rescaled, to explain a different pick")
    p.add_argument("--repeat", type=int, default=2, help="runs of each side, alternating; "
                   "the best wall time and the lowest peak are kept (default 2)")
    p.add_argument("--bf16", action="store_true", help="also run select --torch-dtype "
                   "bfloat16, and say whether its pick lies in the float32 run's set")
    p.add_argument("--together", action="store_true", help="rank every --model in one run "
                   "on each side (for each --aggregate), not one model at a time")
    p.add_argument("--aggregate", nargs="+", choices=["best-layer", "layer-mean"],
                   default=["best-layer"], help="with --together")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:  # a side of one comparison, run by run_side
        side, job_file, out_file = args.child
        job = json.loads(Path(job_file).read_text())
        result = (child_peer if side == "peer" else child_ours)(job)
        Path(out_file).write_text(json.dumps(result))
        return

    peer_python = ensure_venv(args.venv.expanduser().resolve())
    found = list(measure(args, peer_python))
    if args.together:
        return print_together(args, found)
    rows = [(n, models[0], est, runs["peer"], runs["ours"], runs["full"])
            for n, models, est, _, runs in found]
    bf16s = [(n, est, runs["bf16"], runs["peer"], runs["full"])
             for n, _, est, _, runs in found if "bf16" in runs]

    print(f"\nBest of {args.repeat} cold processes, alternating. Wall s and peak RSS MB of "
          "each process; ratios are transformer-ranker / ours (> 1: ours faster or smaller).\n"
          "ours = select (racing), full = select --no-racing. Per-layer scoring s: peer = one "
          "fit; ours = the whole-texts fit with its shuffles.")
    head = (f"{'n':>5} {'est':<6} {'peer s':>7} {'ours s':>7} {'ratio':>5} {'full s':>7} "
            f"{'ratio':>5} {'peer MB':>7} {'ours MB':>7} {'ratio':>5} {'full MB':>7} "
            f"{'picks peer/ours/full':>20} {'ours in full set':>16} {'blocks read':>12}")
    print(head + "\n" + "-" * len(head))
    for n, _model, est, peer, ours, full in rows:
        rc = ours["racing"]
        print(f"{n:>5} {est:<6} {peer['wall']:>7.1f} {ours['wall']:>7.1f} "
              f"{peer['wall'] / ours['wall']:>5.2f} {full['wall']:>7.1f} "
              f"{peer['wall'] / full['wall']:>5.2f} {peer['rss_mb']:>7.0f} {ours['rss_mb']:>7.0f} "
              f"{peer['rss_mb'] / ours['rss_mb']:>5.2f} {full['rss_mb']:>7.0f} "
              f"{peer['layer'] + 1:>6}/{ours['layer']:>2}/{full['layer']:>2}       "
              f"{ours['layer'] in full['within_noise'] or ours['layer'] == full['layer']!s:>16}"
              f" {rc['block_passes']:>5}/{rc['block_passes_without_racing']:<5}")
    print("(The peer's layer i is our hidden state i + 1: it skips the embeddings.)")
    head = (f"{'n':>5} {'model':<14} {'est':<6} {'peer s':>7} {'ours s':>7} {'ratio':>5} "
            f"{'peer MB':>7} {'ours MB':>7} {'ratio':>5} {'peer/layer':>10} "
            f"{'ours/layer [whole]':>18} {'peer pick':>9} {'ours pick':>9} {'rho':>5}")
    print(head + "\n" + "-" * len(head))
    mean = lambda v: sum(v) / len(v) if v else float("nan")  # noqa: E731
    for n, model, est, peer, ours, _ in rows:
        # rho: Spearman of the two per-layer score curves over the layers both score.
        common = [ours["scores"][ours["layers"].index(i + 1)] for i in range(len(peer["scores"]))]
        print(f"{n:>5} {model[:14]:<14} {est:<6} {peer['wall']:>7.1f} {ours['wall']:>7.1f} "
              f"{peer['wall'] / ours['wall']:>5.2f} {peer['rss_mb']:>7.0f} {ours['rss_mb']:>7.0f} "
              f"{peer['rss_mb'] / ours['rss_mb']:>5.2f} {mean(peer['fits']):>10.3f} "
              f"{mean(ours['layer_times']):>9.3f} [{mean(ours['whole_fits']):.3f}] "
              f"{peer['layer']:>9} {ours['layer']:>9} {spearman(peer['scores'], common):>5.2f}")
    for n, est, bf, peer, full in bf16s:
        inside = bf["layer"] == full["layer"] or bf["layer"] in full["within_noise"]
        print(f"{n:>5} {est:<6} bfloat16: {bf['wall']:.1f} s ({peer['wall'] / bf['wall']:.2f}x "
              f"the peer), {bf['rss_mb']:.0f} MB, pick {bf['layer']} (float32 full run: "
              f"{full['layer']}; inside its set: {inside})")
    print("\nWhere the time goes, s (in-process; the rest of the wall time is interpreter "
          "start and exit). Ours: forward = forward pass + moments; store = statistics "
          "store write.")
    for n, _, est, peer, ours, _ in rows:
        pp, op = peer["phases"], ours["phases"]
        print(f"{n:>5} {est:<6} peer: imports {pp['imports']:.1f}, load x2 {pp['load']:.1f}, "
              f"forward+pool {pp['forward']:.1f}, scoring {pp['scoring']:.1f}, other "
              f"{peer['total'] - pp['imports'] - pp['load'] - pp['forward'] - pp['scoring']:.1f}"
              f" (texts used {peer['n_used']})")
        print(f"{'':>12} ours: imports {op['imports']:.1f}, load {op['load']:.1f}, forward "
              f"{op['forward']:.1f}, store {op['stats'] - op['forward']:.1f}, scoring "
              f"{op['scoring']:.1f}, other "
              f"{ours['total'] - op['imports'] - op['load'] - op['stats'] - op['scoring']:.1f}")
        if "explain" in peer:
            print(f"{'':>12} our {est} on the peer's features picks layer "
                  f"{peer['explain']['raw']} raw, {peer['explain']['scaled']} rescaled by 1/sd")


if __name__ == "__main__":
    main()
