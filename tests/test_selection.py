"""LayerSelector on tiny random models: the pick, its margin and interval, and the Pipeline."""

import io
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from scipy.stats import t as student_t
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline

from sklearn_ntps import HFEmbeddingTransformer, HScoreScorer, LayerSelector, LogMEScorer
from sklearn_ntps.choice.protocol import feature_scale
from sklearn_ntps.splits import stratified_blocks
from sklearn_ntps.states.statistics import resample_blocks

from builders import TINY_WORDS, make_tiny_bert, require_bundled

rng = np.random.default_rng(0)
WORDS = TINY_WORDS[3:]
TEXTS = [" ".join(rng.choice(WORDS, size=rng.integers(2, 9))) for _ in range(36)]
LABELS = np.array([i % 2 for i in range(36)])


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert", hidden_size=8,
                          n_layers=3, seed=1)


def selector(models, **params):
    return LayerSelector(models, **{"n_blocks": 3, "progress": False, "batch_size": 4, **params})


@pytest.fixture(scope="module")
def fitted(tiny_llama, tiny_bert):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return selector([tiny_llama, tiny_bert], cache=False).fit(TEXTS, LABELS)


def test_a_layer_scored_by_hand(fitted, tiny_llama):
    # The same blocks, the model run over each, the moments summed and rescaled by 1/sd.
    blocks = stratified_blocks(LABELS, 3, 0)
    assert all(np.array_equal(a, b) for a, b in zip(fitted.blocks_, blocks))
    emb = HFEmbeddingTransformer(model_name_or_path=tiny_llama, layer=1, output="tokens",
                                 batch_size=4, cache=False, progress=False).fit()
    parts = [emb.transform([TEXTS[i] for i in b]) for b in blocks]
    moments = resample_blocks(parts, [1, 1, 1])
    y = np.concatenate([LABELS[b] for b in blocks])
    # Two models: rule M's default for choosing among models, H-score.
    assert isinstance(fitted.scorer_, HScoreScorer)
    by_hand = HScoreScorer().fit(moments.scaled(feature_scale(moments.pooled)), y)
    assert fitted.scores_[tiny_llama][1] == by_hand.score_
    record = next(r for r in fitted.results_ if (r["model"], r["layer"]) == (tiny_llama, 1))
    assert (record["chance"], record["chance_std"]) == (by_hand.chance_, by_hand.chance_std_)
    assert record["z"] == pytest.approx((by_hand.score_ - by_hand.chance_) / by_hand.chance_std_)
    # Each block alone, rescaled by its own spread.
    alone = parts[2].scaled(feature_scale(parts[2].pooled))
    assert fitted.block_scores_[tiny_llama][2, 1] == HScoreScorer().fit(alone, LABELS[
        blocks[2]]).score_
    # Without the rescaling the score differs: the footing is in the number.
    assert HScoreScorer().fit(moments, y).score_ != pytest.approx(by_hand.score_, rel=1e-6)


def test_the_pick_is_the_arg_max(fitted, tiny_llama, tiny_bert):
    assert fitted.layers_ == {tiny_llama: [0, 1, 2], tiny_bert: [0, 1, 2, 3]}
    pairs = [(m, layer, s) for m, scores in fitted.scores_.items()
             for layer, s in zip(fitted.layers_[m], scores)]
    best = max(pairs, key=lambda p: p[2])
    assert (fitted.best_model_, fitted.best_layer_, fitted.best_score_) == best
    assert [r["score"] for r in fitted.results_] == sorted((p[2] for p in pairs), reverse=True)
    assert [r["rank"] for r in fitted.results_] == list(range(1, 8))
    assert [r["picked"] for r in fitted.results_] == [True] + [False] * 6
    assert fitted.runner_up_ == (fitted.results_[1]["model"], fitted.results_[1]["layer"])


def test_margin_and_its_interval_come_from_the_blocks(fitted):
    (m1, l1), (m2, l2) = (fitted.best_model_, fitted.best_layer_), fitted.runner_up_
    column = {m: fitted.layers_[m].index for m in fitted.layers_}
    s1, s2 = fitted.scores_[m1][column[m1](l1)], fitted.scores_[m2][column[m2](l2)]
    assert fitted.margin_ == s1 - s2
    b1 = fitted.block_scores_[m1][:, column[m1](l1)]
    b2 = fitted.block_scores_[m2][:, column[m2](l2)]
    np.testing.assert_array_equal(fitted.margin_blocks_, b1 - b2)
    # Centred on the margin over all texts; half-width t(2) * sd / sqrt(3) over the blocks.
    half = student_t.ppf(0.975, 2) * np.std(b1 - b2, ddof=1) / np.sqrt(3)
    cell = fitted.margin_interval_
    assert cell["low"] == pytest.approx(fitted.margin_ - half, rel=1e-12)
    assert cell["high"] == pytest.approx(fitted.margin_ + half, rel=1e-12)
    assert cell["block_mean"] == pytest.approx(np.mean(b1 - b2)) and cell["n"] == 3
    top = fitted.results_[0]
    b = fitted.block_scores_[m1][:, column[m1](l1)]
    assert top["high"] - top["score"] == pytest.approx(
        student_t.ppf(0.975, 2) * np.std(b, ddof=1) / np.sqrt(3), rel=1e-12)


def test_layer_mean_picks_the_model_by_its_mean(fitted, tiny_llama, tiny_bert):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        other = clone(fitted).set_params(aggregate="layer-mean", cache=False).fit(TEXTS, LABELS)
    means = {m: s.mean() for m, s in other.scores_.items()}
    model = max(means, key=means.get)
    assert other.best_model_ == model
    assert other.best_layer_ == other.layers_[model][int(np.argmax(other.scores_[model]))]
    # The same scores: only the choice differs.
    for m in fitted.scores_:
        np.testing.assert_array_equal(other.scores_[m], fitted.scores_[m])


def test_fit_transform_uses_fit_s_own_pass(fitted, tiny_llama, ntps_cache):
    pooled = clone(fitted).set_params(models=[tiny_llama], layers=[1]).fit_transform(
        TEXTS, LABELS)
    direct = HFEmbeddingTransformer(model_name_or_path=tiny_llama, layer=1, cache=False,
                                    progress=False).fit_transform(TEXTS)
    np.testing.assert_allclose(pooled, direct, rtol=1e-5, atol=1e-6)


def test_pickles_without_weights_and_transforms_alike(fitted, tmp_path):
    from sklearn_ntps.states import models

    before = fitted.transform(TEXTS[:5])
    blob = pickle.dumps(fitted)
    weights = Path(fitted.best_model_) / "model.safetensors"
    assert len(blob) < weights.stat().st_size / 2
    models.clear_cache()  # the loaded copy is gone: the pickle must not need it
    modules = set()

    class Recording(pickle.Unpickler):
        def find_class(self, module, name):
            modules.add(module.split(".")[0])
            return super().find_class(module, name)

    loaded = Recording(io.BytesIO(blob)).load()
    assert modules.isdisjoint({"torch", "transformers", "safetensors"}), modules
    assert loaded.best_model_ == fitted.best_model_
    np.testing.assert_array_equal(loaded.transform(TEXTS[:5]), before)


def test_in_a_pipeline_under_cross_validation_and_grid_search(tiny_llama, tiny_bert,
                                                              ntps_cache):
    pipe = make_pipeline(LayerSelector([tiny_llama], n_blocks=2, progress=False, batch_size=4),
                         LogisticRegression())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        scores = cross_val_score(pipe, TEXTS, LABELS, cv=2)
        assert scores.shape == (2,) and np.isfinite(scores).all()
        grid = GridSearchCV(pipe, {"layerselector__models": [[tiny_llama], [tiny_bert]],
                                   "layerselector__aggregate": ["best-layer", "layer-mean"]},
                            cv=2).fit(TEXTS, LABELS)
    assert len(grid.cv_results_["params"]) == 4
    chosen = grid.best_estimator_[0]
    assert chosen.best_model_ in (tiny_llama, tiny_bert)
    assert grid.best_estimator_.predict(TEXTS[:3]).shape == (3,)


def test_a_scorer_by_name_or_as_an_estimator(tiny_llama, ntps_cache):
    by_name = selector([tiny_llama], scorer="hscore").fit(TEXTS, LABELS)
    by_object = selector([tiny_llama], scorer=HScoreScorer()).fit(TEXTS, LABELS)
    np.testing.assert_array_equal(by_name.scores_[tiny_llama], by_object.scores_[tiny_llama])
    assert not np.array_equal(by_name.scores_[tiny_llama],
                              selector([tiny_llama]).fit(TEXTS, LABELS).scores_[tiny_llama])


def test_torch_dtype_reaches_the_model_and_keys_the_store(tiny_llama, ntps_cache):
    full = selector([tiny_llama], scorer="hscore").fit(TEXTS, LABELS)
    half = selector([tiny_llama], scorer="hscore", torch_dtype="bfloat16").fit(TEXTS, LABELS)
    assert half.embedding_.dtype_ == "bfloat16" and full.embedding_.dtype_ == "float32"
    # bfloat16 keeps 8 bits of mantissa: the scores move, but not far.
    assert not np.array_equal(half.scores_[tiny_llama], full.scores_[tiny_llama])
    np.testing.assert_allclose(half.scores_[tiny_llama], full.scores_[tiny_llama], rtol=0.2)


def test_one_model_defaults_to_logme_several_to_hscore(tiny_llama, tiny_bert, ntps_cache):
    assert isinstance(selector([tiny_llama]).fit(TEXTS, LABELS).scorer_, LogMEScorer)
    assert isinstance(selector([tiny_llama, tiny_bert]).fit(TEXTS, LABELS).scorer_, HScoreScorer)


def test_with_labels_independent_of_the_texts_every_pair_is_within_noise(tiny_llama, tiny_bert,
                                                                          ntps_cache):
    noise = np.random.default_rng(7).permutation(LABELS)
    for scorer in ("logme", "hscore", "ridge_loo"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            fitted = selector([tiny_llama, tiny_bert], scorer=scorer).fit(TEXTS, noise)
        assert fitted.leaves_chance_ is False, scorer
        assert all(r["within_noise"] for r in fitted.results_), scorer


def test_a_planted_signal_leaves_chance_and_separates_pairs(tiny_llama, ntps_cache):
    # The label is the first word: the embeddings see it at every layer above the first.
    texts = [f"{'good' if y else 'bad'} {t}" for t, y in zip(TEXTS, LABELS)] * 3
    labels = np.tile(LABELS, 3)
    fitted = selector([tiny_llama], scorer="ridge_loo", n_blocks=3).fit(texts, labels)
    assert fitted.leaves_chance_ is True
    pick = next(r for r in fitted.results_ if r["picked"])
    assert pick["z"] > fitted.chance_threshold_ and pick["within_noise"]


def test_without_shuffles_nothing_says_whether_the_pick_leaves_chance(tiny_llama, ntps_cache):
    fitted = selector([tiny_llama], n_permutations=0).fit(TEXTS, LABELS)
    assert fitted.leaves_chance_ is None
    assert all(np.isnan(r["chance"]) for r in fitted.results_)


def test_one_pair_has_no_runner_up(tiny_llama, ntps_cache):
    one = selector([tiny_llama], layers=[-1]).fit(TEXTS, LABELS)
    assert one.best_layer_ == 2 and one.runner_up_ is None and np.isnan(one.margin_)
    assert np.isnan(one.margin_interval_["low"])


@pytest.mark.parametrize("change, message", [
    ({"models": ["no-such-model"]}, "Unknown model 'no-such-model'"),
    ({"models": []}, "models is empty"),
    ({"layers": [7]}, "layers must be a non-empty list"),
    ({"n_blocks": 30}, r"block\(s\) \[.*\] hold a single class"),
    ({"scorer": "nope"}, "'scorer' parameter"),
])
def test_bad_settings_fail_before_any_forward_pass(tiny_llama, monkeypatch, change, message):
    from sklearn_ntps.states import embedding

    def no_pass(*args, **kwargs):
        raise AssertionError("no model may run")

    monkeypatch.setattr(embedding, "extract_statistics", no_pass)
    params = {"models": [tiny_llama], **change}
    with pytest.raises(ValueError, match=message):
        selector(cache=False, **params).fit(TEXTS, LABELS)


def test_a_single_class_or_a_duplicate_model_fails(tiny_llama):
    with pytest.raises(ValueError, match="single class"):
        selector([tiny_llama]).fit(TEXTS, np.zeros(len(TEXTS)))
    with pytest.raises(ValueError, match="twice"):
        selector([tiny_llama, tiny_llama]).fit(TEXTS, LABELS)


@pytest.mark.slow
def test_a_bundled_model_in_a_pipeline():
    from sklearn_ntps.datasets import load_dataset

    require_bundled("all-MiniLM-L6-v2")
    data = load_dataset("sms_spam", split="all", n_samples=60, random_state=0)
    pipe = make_pipeline(LayerSelector(["all-MiniLM-L6-v2"], n_blocks=3, progress=False),
                         LogisticRegression(max_iter=1000))
    accuracy = cross_val_score(pipe, data.data, data.target, cv=3)
    # Ham or spam from a sentence encoder's features: far above the 50% of chance.
    assert accuracy.mean() > 0.8
    fitted = pipe.fit(data.data, data.target)[0]
    scores = fitted.scores_["all-MiniLM-L6-v2"]
    assert fitted.best_layer_ == int(np.argmax(scores)) and len(scores) == 7
