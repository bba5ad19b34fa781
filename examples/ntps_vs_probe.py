"""Which score tracks what a linear probe achieves? One point per layer, with intervals.

Runs the main job's :func:`~sklearn_ntps.report.run_report` on two data sets:
NTPS and its peers (LogME, H-score, TransRate, RankMe) against the held-out
probe, with bootstrap intervals, and prints their correlations and regrets.

    python examples/ntps_vs_probe.py
"""

from sklearn_ntps.datasets import load_dataset
from sklearn_ntps.report import run_report


def main(model="SmolLM2-135M", datasets=("banking77", "sms_spam"), n_train=308, n_test=154,
         n_bootstrap=5):
    data = {}
    for name in datasets:
        train = load_dataset(name, split="train", n_samples=n_train, random_state=0)
        test = load_dataset(name, split="test", n_samples=n_test, random_state=0)
        data[name] = (train.data, train.target, test.data, test.target)
    report = run_report([model], data, n_bootstrap=n_bootstrap, n_blocks=10)
    print(report.to_text())
    return report


if __name__ == "__main__":
    main()
