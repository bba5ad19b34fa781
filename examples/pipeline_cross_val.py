"""NTPS in a Pipeline, scored by cross-validation.

The transformer turns texts into one layer's NTPS statistics; the scorer fits
the next-token subspace on each training fold and scores the held-out fold.

    python examples/pipeline_cross_val.py
"""

from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline

from sklearn_ntps import HFEmbeddingTransformer, NTPSScorer
from sklearn_ntps.datasets import load_sms_spam


def main(model="SmolLM2-135M", n_texts=200, n_components=0.25):
    X, y = load_sms_spam(split="train", n_samples=n_texts, return_X_y=True)
    pipe = make_pipeline(
        HFEmbeddingTransformer(model_name_or_path=model, layer=-1, output="tokens"),
        NTPSScorer(n_components=n_components),
    )
    scores = cross_val_score(pipe, X, y, cv=StratifiedKFold(3, shuffle=True, random_state=0))
    print(f"NTPS of {model}'s last layer on SMS spam, 3 folds: {scores.round(3)}")
    return scores


if __name__ == "__main__":
    main()
