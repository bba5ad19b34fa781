"""How much the frozen probe's fit loses to BLAS and torch thread pools spinning against each other.

The probe (``default_probe()``: StandardScaler + LogisticRegressionCV) is fitted right after a
torch forward pass, as in ``report``, ``run_prescreen`` and ``HFLoRAClassifier`` (probe first).
Each case runs in a fresh process: (a) the same steps in a plain Pipeline, every pool at its
default (the library before this benchmark); (b) ``default_probe()`` itself, whose fit runs
every BLAS pool on one thread. With ``--busy`` a background
process keeps one core busy, as another job on a shared machine would. Prints the seconds and
the ratio (a) / (b), measured in one run.

    python benchmarks/bench_probe_threads.py [--busy] [--n 1000] [--d 576] [--classes 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
import numpy as np
import torch
from sklearn.base import clone
from sklearn_ntps.choice.probe import default_probe

n, d, k, limit = (int(a) for a in sys.argv[1:5])
rng = np.random.default_rng(0)
y = np.arange(n) % k
X = rng.normal(size=(n, d)) + 0.3 * rng.normal(size=(k, d))[y]
layer = torch.nn.Linear(d, d)
with torch.no_grad():  # a forward pass first: torch's OpenMP pool has just been busy
    for _ in range(20):
        layer(torch.randn(512, d))
from sklearn.pipeline import Pipeline
probe = clone(default_probe()) if limit else Pipeline(clone(default_probe()).steps)
start = time.perf_counter()
probe.fit(X, y)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""

BUSY = "import numpy as np\na = np.ones((300, 300))\nwhile True:\n    a = np.sin(a) + 1.0\n"


def run(n, d, k, limit):
    out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(d), str(k), str(int(limit))],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", action="store_true", help="keep one core busy meanwhile")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--d", type=int, default=576)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    busy = subprocess.Popen([sys.executable, "-c", BUSY]) if args.busy else None
    try:
        time.sleep(1 if busy else 0)
        times = {limit: [run(args.n, args.d, args.classes, limit) for _ in range(args.repeats)]
                 for limit in (False, True)}
    finally:
        if busy:
            busy.kill()
    a, b = min(times[False]), min(times[True])
    print(f"probe fit, n={args.n} d={args.d} classes={args.classes}"
          f"{', one core busy' if args.busy else ''}: plain Pipeline {a:.2f} s, "
          f"default_probe() {b:.2f} s; ratio {a / b:.2f} (best of {args.repeats})")


if __name__ == "__main__":
    main()
