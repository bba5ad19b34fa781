"""GridSearchCV over the layers of one model, ranked by NTPS.

Every layer comes from the same forward pass (cached per fold), so searching
all layers costs little more than searching one.

    python examples/grid_search_layers.py
"""

from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from sklearn_ntps import HFEmbeddingTransformer, NTPSScorer
from sklearn_ntps.datasets import load_banking77


def main(model="SmolLM2-135M", n_texts=308, n_components=0.25):
    X, y = load_banking77(split="train", n_samples=n_texts, return_X_y=True)
    pipe = Pipeline([
        ("embed", HFEmbeddingTransformer(model_name_or_path=model, output="tokens")),
        ("ntps", NTPSScorer(n_components=n_components)),
    ])
    n_layers = pipe.named_steps["embed"].fit().n_layers_
    grid = GridSearchCV(pipe, {"embed__layer": list(range(n_layers))},
                        cv=StratifiedKFold(2, shuffle=True, random_state=0), refit=False)
    grid.fit(X, y)
    ranked = sorted(zip(grid.cv_results_["mean_test_score"], range(n_layers)), reverse=True)
    print(f"{model} on BANKING77: best layers by held-out NTPS")
    for score, layer in ranked[:5]:
        print(f"  layer {layer:>2}: NTPS {score:.3f}")
    return grid


if __name__ == "__main__":
    main()
