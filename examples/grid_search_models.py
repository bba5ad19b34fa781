"""GridSearchCV over models: a decoder (SmolLM2) against an encoder (MiniLM).

The models have different hidden sizes; ``n_components`` as a fraction keeps
the comparison fair. The probe's held-out accuracy picks the winner.

    python examples/grid_search_models.py
"""

from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from sklearn_ntps import HFEmbeddingTransformer, NTPSSubspaceProbe
from sklearn_ntps.datasets import load_sms_spam


def main(models=("SmolLM2-135M", "all-MiniLM-L6-v2"), n_texts=200, n_components=0.25):
    X, y = load_sms_spam(split="train", n_samples=n_texts, return_X_y=True)
    pipe = Pipeline([
        ("embed", HFEmbeddingTransformer(output="tokens")),
        ("probe", NTPSSubspaceProbe(n_components=n_components)),
    ])
    grid = GridSearchCV(pipe, {"embed__model_name_or_path": list(models)},
                        cv=StratifiedKFold(2, shuffle=True, random_state=0), refit=False)
    grid.fit(X, y)
    for model, acc in zip(models, grid.cv_results_["mean_test_score"]):
        print(f"{model:<20} probe accuracy in the NTPS subspace: {acc:.3f}")
    return grid


if __name__ == "__main__":
    main()
