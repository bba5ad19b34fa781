"""The main job's wall time: the layers' probes in worker processes against the probes here.

Runs ``sklearn-ntps report`` at its defaults (SmolLM2-135M on BANKING77, 31 layers) in fresh
processes, each with an empty statistics store of its own (so the GGUF is de-quantised and the
forward pass runs every time, as on a fresh clone): ``--n-jobs -1`` (each layer's probe in a
worker process beside the next layers' scores, the default) and ``--n-jobs 1`` (each probe
fitted here, its folds in 2 processes), alternating, ``--repeats`` times each. Prints every
run's wall seconds, the best of each side, their ratio measured in this one run, the machine's
load average before the first run, and whether both sides wrote the same report.csv.

``--against REV`` races this tree's default report against the same command in a checkout of
commit ``REV`` instead (a temporary git worktree, imported first through ``PYTHONPATH``), so a
change's effect on the main job is one ratio from one run.

    python benchmarks/bench_report.py [--repeats 1] [--n-texts 900] [--against REV]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(n_jobs: int, n_texts: int, folder: Path, code: Path | None = None
            ) -> tuple[float, bytes]:
    """Seconds of one cold ``report`` process (of the package in ``code`` if given), and its csv."""
    env = {**os.environ, "SKLEARN_NTPS_CACHE": str(folder / "cache"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")])
    out = folder / "out"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sklearn_ntps.cli", "report", "--n-jobs", str(n_jobs),
                    "--n-texts", str(n_texts), "--no-plot", "--no-progress",
                    "--output-dir", str(out)], check=True, env=env, capture_output=True,
                   cwd=folder)  # not the repository: the current folder comes first on sys.path
    return time.perf_counter() - start, (out / "report.csv").read_bytes()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--n-texts", type=int, default=900)
    parser.add_argument("--against", metavar="REV", help="race the default report of this commit")
    args = parser.parse_args()
    print(f"load average (1, 5, 15 min) {os.getloadavg()} on {os.cpu_count()} cores")
    if args.against:
        return against(args.against, args.repeats, args.n_texts)
    seconds, files = {-1: [], 1: []}, {}
    for _ in range(args.repeats):
        for n_jobs in (-1, 1):
            with tempfile.TemporaryDirectory() as tmp:
                s, files[n_jobs] = one_run(n_jobs, args.n_texts, Path(tmp))
            seconds[n_jobs].append(s)
            print(f"--n-jobs {n_jobs:>2}: {s:.0f} s", flush=True)
    apart, here = min(seconds[-1]), min(seconds[1])
    print(f"best: --n-jobs -1 {apart:.0f} s, --n-jobs 1 {here:.0f} s; ratio (1 / -1) "
          f"{here / apart:.2f}x; the same report.csv: {files[-1] == files[1]}")


def against(rev: str, repeats: int, n_texts: int):
    """This tree's default report against commit ``rev``'s, alternating, cold, empty stores."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tree:
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", tree, rev],
                       check=True, capture_output=True)
        try:
            seconds, files = {"here": [], rev: []}, {}
            for _ in range(repeats):
                for side, code in (("here", root), (rev, Path(tree))):
                    with tempfile.TemporaryDirectory() as tmp:
                        s, files[side] = one_run(-1, n_texts, Path(tmp), code)
                    seconds[side].append(s)
                    print(f"{side}: {s:.0f} s", flush=True)
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", tree],
                           check=True, capture_output=True)
    here, there = min(seconds["here"]), min(seconds[rev])
    print(f"best: here {here:.0f} s, {rev} {there:.0f} s; ratio ({rev} / here) "
          f"{there / here:.2f}x; the same report.csv: {files['here'] == files[rev]}")
    for line in differences(files["here"], files[rev]):
        print(line)


def differences(a: bytes, b: bytes) -> list:
    """Per column of two report.csv files: in how many rows it differs, and by how much at most."""
    import csv
    import io

    rows_a, rows_b = (list(csv.DictReader(io.StringIO(f.decode()))) for f in (a, b))
    lines = []
    for column in rows_a[0]:
        pairs = [(r[column], s[column]) for r, s in zip(rows_a, rows_b) if r[column] != s[column]]
        if pairs:
            try:
                most = max(abs(float(x) - float(y)) for x, y in pairs)
            except ValueError:
                most = float("nan")
            lines.append(f"  {column}: {len(pairs)} of {len(rows_a)} rows differ, "
                         f"by at most {most:.3g}")
    return lines


if __name__ == "__main__":
    main()
