"""How well does LayerSelector's standard error describe the margin's spread over draws?

For MiniLM's last layer against its embeddings (LogME, on the probe's footing), on
``n_draws`` independent stratified draws of 300 texts of a data set, five blocks each: the
margin on all the texts, the blocks' mean, the standard error LayerSelector uses (``sd /
sqrt(5)`` over the blocks alone) and a grouped jackknife's (each block left out in turn); then
the margin's standard deviation over the draws, the figure both should match. docs/selection.md
quotes the output. ``python docs/selection_interval.py`` (about 25 minutes on 2 cores).
"""

import warnings

import numpy as np

from sklearn_ntps import HFEmbeddingTransformer, LogMEScorer
from sklearn_ntps.choice.protocol import block_layers, fit_scores, on_probe_footing
from sklearn_ntps.datasets import load_dataset
from sklearn_ntps.splits import stratified_blocks

N_BLOCKS, N_TEXTS, N_DRAWS = 5, 300, 6


def score(parts, labels):
    return fit_scores({"s": LogMEScorer()}, on_probe_footing(parts)[0],
                      np.concatenate(labels))["s"]


def main():
    warnings.simplefilter("ignore")  # few texts per class in a block: scikit-learn says so
    emb = HFEmbeddingTransformer(model_name_or_path="all-MiniLM-L6-v2", output="tokens",
                                 layers=[0, 6], max_length=64, progress=False).fit()
    for name in ("banking77", "sms_spam"):
        margins = []
        for seed in range(N_DRAWS):
            data = load_dataset(name, split="all", n_samples=N_TEXTS, random_state=seed)
            y = np.asarray(data.target)
            blocks = stratified_blocks(y, N_BLOCKS, seed)
            ys = [y[b] for b in blocks]
            per = {}
            for layer, parts in block_layers(emb, data.data, blocks, desc="", progress=False):
                alone = [score([p], [q]) for p, q in zip(parts, ys)]
                left_out = [score([p for j, p in enumerate(parts) if j != i],
                                  [q for j, q in enumerate(ys) if j != i])
                            for i in range(N_BLOCKS)]
                per[layer] = (score(parts, ys), np.array(alone), np.array(left_out))
            margin, blocks_alone, jack = (per[6][k] - per[0][k] for k in range(3))
            se_blocks = blocks_alone.std(ddof=1) / np.sqrt(N_BLOCKS)
            se_jack = np.sqrt((N_BLOCKS - 1) / N_BLOCKS * ((jack - jack.mean()) ** 2).sum())
            margins.append(margin)
            print(f"{name} draw {seed}: margin {margin:+.4f}  blocks' mean "
                  f"{blocks_alone.mean():+.4f}  se (blocks) {se_blocks:.4f}  "
                  f"se (jackknife) {se_jack:.4f}", flush=True)
        print(f"{name}: sd of the margin over {N_DRAWS} draws {np.std(margins, ddof=1):.4f}",
              flush=True)


if __name__ == "__main__":
    main()
