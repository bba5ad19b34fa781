"""LoRA against the frozen linear probe, on the same split, with the fit times.

HFLoRAClassifier (the library defaults, and one epoch at 2e-4 for contrast) and
a frozen probe on the same layer of SmolLM2-135M, 1,000 BANKING77 training and
500 test texts; prints accuracies, the LoRA gain and the time ratio to the probe.

    python benchmarks/bench_lora.py [--model SmolLM2-135M] [--dataset banking77]
"""

import argparse
import time

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_ntps import HFEmbeddingTransformer, HFLoRAClassifier
from sklearn_ntps.datasets import load_dataset
from sklearn_ntps.models import load_model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="SmolLM2-135M")
    parser.add_argument("--dataset", default="banking77")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=500)
    args = parser.parse_args()
    train = load_dataset(args.dataset, split="train", n_samples=args.n_train, random_state=0)
    test = load_dataset(args.dataset, split="test", n_samples=args.n_test, random_state=0)
    load_model(args.model, progress=False)  # the load is not what is timed
    probe = make_pipeline(HFEmbeddingTransformer(model_name_or_path=args.model, max_length=64,
                                                 cache=False, progress=False),
                          StandardScaler(), LogisticRegression(max_iter=1000))
    start = time.perf_counter()
    probe_acc = probe.fit(train.data, train.target).score(test.data, test.target)
    probe_s = time.perf_counter() - start
    print(f"frozen probe: accuracy {probe_acc:.3f}, {probe_s:.0f} s (fit and score)")
    for name, params in (("defaults", {}), ("1 epoch at 2e-4", {"epochs": 1,
                                                                "learning_rate": 2e-4})):
        clf = HFLoRAClassifier(model_name_or_path=args.model, max_length=64, random_state=0,
                               progress=False, **params)
        start = time.perf_counter()
        acc = clf.fit(train.data, train.target).score(test.data, test.target)
        seconds = time.perf_counter() - start
        print(f"LoRA {name}: accuracy {acc:.3f}, gain {100 * (acc - probe_acc):+.1f} points, "
              f"{seconds:.0f} s = {seconds / probe_s:.1f}x the probe ({clf.n_steps_} steps)")


if __name__ == "__main__":
    main()
