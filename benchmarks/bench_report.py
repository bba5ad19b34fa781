"""The main job's wall time: the layers' probes in worker processes against the probes here.

Runs ``sklearn-ntps report`` at its defaults (SmolLM2-135M on BANKING77, 31 layers) in fresh
processes, each with an empty statistics store of its own (so the GGUF is de-quantised and the
forward pass runs every time, as on a fresh clone): ``--n-jobs -1`` (each layer's probe in a
worker process beside the next layers' scores, the default) and ``--n-jobs 1`` (each probe
fitted here, its folds in 2 processes), alternating, ``--repeats`` times each. Prints every
run's wall seconds, the best of each side, their ratio measured in this one run, the machine's
load average before the first run, and whether both sides wrote the same report.csv.

    python benchmarks/bench_report.py [--repeats 1] [--n-texts 900]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(n_jobs: int, n_texts: int, folder: Path) -> tuple[float, bytes]:
    """Seconds of one cold ``report`` process, and the report.csv it wrote."""
    env = {**os.environ, "SKLEARN_NTPS_CACHE": str(folder / "cache"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = folder / "out"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sklearn_ntps.cli", "report", "--n-jobs", str(n_jobs),
                    "--n-texts", str(n_texts), "--no-plot", "--no-progress",
                    "--output-dir", str(out)], check=True, env=env, capture_output=True)
    return time.perf_counter() - start, (out / "report.csv").read_bytes()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--n-texts", type=int, default=900)
    args = parser.parse_args()
    print(f"load average (1, 5, 15 min) {os.getloadavg()} on {os.cpu_count()} cores")
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


if __name__ == "__main__":
    main()
