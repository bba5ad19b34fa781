"""Racing over models and layers (sklearn_ntps.choice.racing): who stops, when, and the pick."""

import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator

from sklearn_ntps import KNNScorer
from sklearn_ntps.choice.racing import race, round_ends, separated_below
from sklearn_ntps.splits import stratified_blocks

N_TEXTS = 200
LABELS = np.arange(N_TEXTS) % 2


class FakeEmbedding(BaseEstimator):
    """Layers of pooled features with a known signal; it counts the blocks it is run on."""

    calls: dict = {}

    def __init__(self, name="good", layers=None, layer=-1, signal=(3.0, 0.0)):
        self.name = name
        self.layers = layers
        self.layer = layer
        self.signal = signal

    def fit(self):
        self.layers_ = list(range(len(self.signal))) if self.layers is None else self.layers
        self.model_fingerprint_ = f"fake-{self.name}"  # never in the loaded-model memo
        return self

    def transform_layers(self, texts):
        idx = np.array([int(t) for t in texts])
        for layer in self.layers_:
            FakeEmbedding.calls.setdefault(self.name, []).append((layer, len(idx)))
            rng = np.random.default_rng([layer, 7 if self.name == "good" else 8])
            noise = rng.normal(size=(N_TEXTS, 4))[idx]
            yield layer, noise + self.signal[layer] * LABELS[idx, None]


def run(racing, **models):
    FakeEmbedding.calls = {}
    embeddings = {name: FakeEmbedding(name=name, signal=signal).fit()
                  for name, signal in models.items()}
    blocks = stratified_blocks(LABELS, 5, 0)
    return race(embeddings, [str(i) for i in range(N_TEXTS)], blocks,
                [LABELS[b] for b in blocks], KNNScorer(n_permutations=5), racing=racing,
                progress=False)


def test_round_ends():
    assert round_ends(5) == [3, 5] and round_ends(4) == [3, 4] and round_ends(3) == [3]
    assert round_ends(20, (0.1, 1.0)) == [3, 20] and round_ends(10) == [3, 5, 10]


def test_separated_below_by_hand():
    from scipy.stats import t

    # b trails a by 0.5 on every block (its differences 0.5, 0.5, 0.6, 0.45); c is a's twin.
    blocks = {"a": [1.0, 1.1, 0.9, 1.0], "b": [0.5, 0.6, 0.3, 0.55], "c": [1.1, 1.0, 0.9, 0.95]}
    sizes = {"n_block": 100, "n_so_far": 400, "n_all": 1000}
    assert separated_below(blocks, {"a": 1.0, "b": 0.5, "c": 0.99}, **sizes) == ["b"]
    # The margin shrinks from 0.5 (a block) to m (four blocks): extrapolated to 1,000 texts,
    # m + (m - 0.5) * 0.2; b stops only while that, less the t half-width, stays above 0.
    diffs = np.array([0.5, 0.5, 0.6, 0.45])
    half = t.ppf(0.975, 3) * diffs.std(ddof=1) / 2
    for m in (0.2, 0.1):
        at_all = m + (m - diffs.mean()) * (1 / 1000 - 1 / 400) / (1 / 400 - 1 / 100)
        stops = separated_below(blocks, {"a": 1.0, "b": 1.0 - m, "c": 0.99}, **sizes)
        assert stops == (["b"] if min(m, at_all) - half > 0 else [])
    assert separated_below(blocks, {"a": 1.0, "b": 0.95, "c": 0.99}, **sizes) == []


def test_a_model_behind_stops_after_the_first_round_and_runs_no_more():
    rows, _ = run(True, good=(3.0, 0.0), blind=(0.0, 0.0))
    stopped = {(r["model"], r["layer"]): r["stopped_after"] for r in rows}
    assert stopped[("good", 0)] is None
    assert stopped[("blind", 0)] == stopped[("blind", 1)] == stopped[("good", 1)] == 1
    # The blind model read three blocks of 40 texts for each layer, then never ran again;
    # the good model read the other two for its one layer left.
    assert FakeEmbedding.calls["blind"] == [(0, 40), (1, 40)] * 3
    assert [layer for layer, _ in FakeEmbedding.calls["good"][6:]] == [0, 0]
    row = next(r for r in rows if r["model"] == "blind" and r["layer"] == 0)
    assert row["n_texts"] == 120 and row["n_blocks"] == 3
    assert np.isnan(row["block_scores"][3:]).all() and np.isfinite(row["block_scores"][:3]).all()


def test_without_racing_every_pair_reads_every_block():
    rows, _ = run(False, good=(3.0, 0.0), blind=(0.0, 0.0))
    assert all(r["stopped_after"] is None and r["n_texts"] == N_TEXTS for r in rows)
    assert len(FakeEmbedding.calls["blind"]) == 2 * 5


def test_racing_and_the_full_run_score_the_survivors_alike():
    raced = {(r["model"], r["layer"]): r for r in run(True, good=(3.0, 2.9))[0]}
    full = {(r["model"], r["layer"]): r for r in run(False, good=(3.0, 2.9))[0]}
    for pair, r in raced.items():
        if r["stopped_after"] is None:
            assert r["score"] == full[pair]["score"]
            np.testing.assert_array_equal(r["block_scores"], full[pair]["block_scores"])


def selector(models, **params):
    from sklearn_ntps import LayerSelector

    return LayerSelector(models, batch_size=8, max_length=32, progress=False, n_blocks=5,
                         **params)


@pytest.mark.parametrize("scorer", ["ridge_loo", "logme"])
def test_the_racing_pick_is_the_full_runs_or_cannot_be_told_apart(tiny_llama, tiny_bert,
                                                                   ntps_cache, scorer):
    pytest.importorskip("transformers")
    from builders import LABELS as TINY_LABELS
    from builders import TEXTS as TINY_TEXTS

    texts = [f"{'good' if y else 'bad'} {t}" for t, y in zip(TINY_TEXTS, TINY_LABELS)] * 5
    labels = np.tile(TINY_LABELS, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        raced = selector([tiny_llama, tiny_bert], scorer=scorer).fit(texts, labels)
        full = selector([tiny_llama, tiny_bert], scorer=scorer, racing=False).fit(texts, labels)
    told_apart = {(r["model"], r["layer"]) for r in full.results_ if not r["within_noise"]}
    assert (raced.results_[0]["model"], raced.best_layer_) not in told_apart
    assert full.racing_["stopped"] == 0
    assert raced.racing_["block_passes"] <= full.racing_["block_passes"]


def test_several_models_are_held_one_at_a_time(tiny_llama, tiny_bert, ntps_cache, monkeypatch):
    pytest.importorskip("transformers")
    from sklearn_ntps.states import models

    from builders import LABELS as TINY_LABELS
    from builders import TEXTS as TINY_TEXTS
    held = []
    load = models.load_model

    def counted(*a, **k):
        loaded = load(*a, **k)
        held.append(len({key[0] for key in models._LOADED}))
        return loaded
    monkeypatch.setattr("sklearn_ntps.states.embedding.load_model", counted)
    models.clear_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fitted = selector([tiny_llama, tiny_bert], scorer="hscore", cache=False).fit(
            np.repeat(TINY_TEXTS, 5).tolist(), np.repeat(TINY_LABELS, 5))
    assert fitted.racing_["block_passes"] > 0
    # Both are loaded to check their layers; from the first forward pass on, one at a time.
    assert held[:2] == [1, 2] and set(held[2:]) == {1}


@pytest.mark.slow
def test_on_a_bundled_model_the_racing_pick_is_inside_the_full_runs_set():
    from builders import require_bundled

    require_bundled("all-MiniLM-L6-v2")
    from sklearn_ntps.datasets import load_banking77

    X, y = load_banking77(split="train", n_samples=400, return_X_y=True)
    raced = selector(["all-MiniLM-L6-v2"]).fit(X, y)
    full = selector(["all-MiniLM-L6-v2"], racing=False).fit(X, y)
    inside = {r["layer"] for r in full.results_ if r["within_noise"]}
    assert raced.best_layer_ == full.best_layer_ or raced.best_layer_ in inside
