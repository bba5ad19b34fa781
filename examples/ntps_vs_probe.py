"""Which score tracks what a linear probe achieves? One point per layer, with intervals.

Runs the main job's :func:`~sklearn_ntps.evidence.report.run_report` on two data sets:
NTPS and its peers (LogME, H-score, TransRate, RankMe, k-NN, a closed-form
ridge probe) against the held-out, tuned probe, on a few random partitions of
the texts into disjoint training and test blocks, and prints their
correlations and regrets (in accuracy points).

    python examples/ntps_vs_probe.py
"""

from sklearn_ntps.datasets import load_dataset
from sklearn_ntps.evidence.report import run_report


def main(model="SmolLM2-135M", datasets=("banking77", "sms_spam"), n_texts=462, n_replicates=3):
    data = {}
    for name in datasets:
        bunch = load_dataset(name, split="all", n_samples=n_texts, random_state=0)
        data[name] = (bunch.data, bunch.target)
    report = run_report([model], data, n_replicates=n_replicates)
    print(report.to_text())
    return report


if __name__ == "__main__":
    main()
