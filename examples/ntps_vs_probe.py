"""Does NTPS track what a linear probe achieves? One point per layer.

Runs the main job's :func:`~sklearn_ntps.report.layer_report` and prints the
table with the Spearman correlation of each NTPS variant with probe accuracy.

    python examples/ntps_vs_probe.py
"""

from sklearn_ntps.datasets import load_banking77
from sklearn_ntps.report import layer_report


def main(model="SmolLM2-135M", n_train=308, n_test=154, n_components=0.25):
    train = load_banking77(split="train", n_samples=n_train)
    test = load_banking77(split="test", n_samples=n_test)
    report = layer_report([model], train.data, train.target, test.data, test.target,
                          dataset="banking77", n_components=n_components)
    print(report.to_text())
    return report


if __name__ == "__main__":
    main()
