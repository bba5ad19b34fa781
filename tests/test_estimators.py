import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils import estimator_checks as ec

from sklearn_ntps import NTPSScorer, NTPSSubspaceProbe, compute_moments, ntps_score

from builders import make_block_texts, make_texts

ESTIMATORS = [NTPSScorer, NTPSSubspaceProbe]


def fitted_state(est):
    return {k: v for k, v in vars(est).items() if k.endswith("_") and not k.startswith("_")}


def assert_same_state(a, b):
    sa, sb = fitted_state(a), fitted_state(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        if isinstance(sa[key], np.ndarray):
            np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)
        elif key != "estimator_":
            assert sa[key] == sb[key], key


@pytest.mark.parametrize("variant", ["paper", "whitened"])
def test_scorer_ntps_equals_function_and_training_score(texts, variant):
    X, y = texts
    scorer = NTPSScorer(n_components=3, variant=variant).fit(X, y)
    assert scorer.ntps_ == ntps_score(X, y, n_components=3, variant=variant)
    assert scorer.score(X, y) == pytest.approx(scorer.ntps_, abs=1e-12)
    assert scorer.ntps_curve_[2] == scorer.ntps_


def test_fitted_subspaces(texts):
    X, y = texts
    scorer = NTPSScorer(n_components=0.5).fit(X, y)
    assert scorer.n_components_ == 4 and scorer.n_features_in_ == 8
    np.testing.assert_allclose(scorer.components_ @ scorer.components_.T, np.eye(4), atol=1e-12)
    assert scorer.perception_components_.shape == (3, 8)
    assert np.all(np.diff(scorer.ar_eigenvalues_) <= 0)
    np.testing.assert_array_equal(scorer.classes_, [0, 1, 2])


@pytest.mark.parametrize("variant", ["paper", "whitened"])
def test_score_uses_fitted_subspace_and_new_labels(variant):
    X, y = make_block_texts("predictable", n_texts=600)
    scorer = NTPSScorer(n_components=4, variant=variant).fit(X[:400], y[:400])
    held_out = scorer.score(X[400:], y[400:])
    Xu, yu = make_block_texts("unpredictable", n_texts=200, seed=1)
    assert held_out > 0.75 and scorer.score(Xu, yu) < 0.1


def test_input_forms_agree(texts):
    X, y = texts
    ref = NTPSScorer(n_components=3).fit(X, y).ntps_
    assert NTPSScorer(n_components=3).fit(compute_moments(X), y).ntps_ == ref
    X3 = np.random.default_rng(0).normal(size=(30, 5, 6))
    y3 = np.arange(30) % 2
    assert (NTPSScorer(n_components=2).fit(X3, y3).ntps_
            == NTPSScorer(n_components=2).fit(list(X3), y3).ntps_)


def test_probe_classifies_in_the_subspace():
    X, y = make_block_texts("predictable", n_texts=300)
    probe = NTPSSubspaceProbe(n_components=4).fit(X[:200], y[:200])
    Z = probe.transform(X[200:])
    assert Z.shape == (100, 4)
    P = np.array([x.mean(axis=0) for x in X[200:]])
    np.testing.assert_allclose(Z, P @ probe.components_.T)
    assert probe.score(X[200:], y[200:]) > 0.95
    np.testing.assert_array_equal(probe.classes_, [0, 1, 2])
    proba = probe.predict_proba(X[200:])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert probe.decision_function(X[200:]).shape == (100, 3)
    # One direction of pure noise carries no class: chance-level accuracy.
    Xu, yu = make_block_texts("unpredictable", n_texts=300)
    noise = NTPSSubspaceProbe(n_components=4).fit(Xu[:200], yu[:200])
    assert noise.score(Xu[200:], yu[200:]) < 0.6


def test_probe_with_any_classifier():
    X, y = make_block_texts("predictable", n_texts=90)
    probe = NTPSSubspaceProbe(n_components=2, estimator=KNeighborsClassifier(3)).fit(X, y)
    assert isinstance(probe.estimator_, KNeighborsClassifier)
    assert probe.predict(X).shape == (90,)
    assert not hasattr(NTPSSubspaceProbe(estimator=KNeighborsClassifier()).fit(X, y),
                       "decision_function")


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_clone_params_pickle_and_refit(Est, texts):
    X, y = texts
    est = Est(n_components=3, variant="whitened")
    assert clone(est).get_params() == est.get_params()
    assert est.set_params(n_components=2) is est and est.n_components == 2
    with pytest.raises(TypeError):
        Est(3)  # keyword-only
    fitted = est.fit(X, y)
    assert fitted is est
    restored = pickle.loads(pickle.dumps(est))
    assert restored.score(X, y) == est.score(X, y)
    again = clone(est).fit(X, y)
    assert_same_state(est, again)
    assert est.fit(X, y).score(X, y) == again.score(X, y)


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_not_fitted(Est, texts):
    X, y = texts
    with pytest.raises(NotFittedError):
        Est().score(X, y)


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_inputs_not_mutated(Est, texts):
    X, y = texts
    X_before, y_before = [x.copy() for x in X], y.copy()
    Est(n_components=2).fit(X, y).score(X, y)
    assert len(X) == len(X_before)
    for a, b in zip(X, X_before):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(y, y_before)


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_cross_validation_and_grid_search(Est):
    X, y = make_block_texts("predictable", n_texts=120)
    scores = cross_val_score(Est(n_components=3), X, y, cv=KFold(3, shuffle=True, random_state=0))
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    grid = GridSearchCV(Est(), {"n_components": [1, 4, 0.5]}, cv=3).fit(X, y)
    assert grid.best_params_["n_components"] in (1, 4, 0.5)
    assert len(grid.cv_results_["mean_test_score"]) == 3


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_wrong_number_of_features_at_score(Est, texts):
    X, y = texts
    est = Est(n_components=2).fit(X, y)
    with pytest.raises(ValueError, match=r"X has 5 features, but .* 8 features"):
        est.score([x[:, :5] for x in X], y)


@pytest.mark.parametrize("Est", ESTIMATORS)
@pytest.mark.parametrize(
    "params, X, y, match",
    [
        ({}, [], [], "empty"),
        ({}, [np.ones((2, 3)), np.ones((0, 3))], [0, 1], "0 tokens"),
        ({}, [np.ones((2, 3)), np.ones((2, 2))], [0, 1], "Inconsistent n_features"),
        ({}, [np.ones((2, 3)), np.full((2, 3), np.nan)], [0, 1], "NaN"),
        ({}, [np.ones((2, 3)), 2 * np.ones((2, 3))], [0, 0], "single class"),
        ({}, [np.ones((2, 3)), 2 * np.ones((2, 3))], [0, 1, 1], "inconsistent numbers"),
        ({"n_components": 4}, [np.ones((2, 3)), 2 * np.ones((2, 3))], [0, 1], "n_components=4"),
        ({"n_components": 1.5}, [np.ones((2, 3)), 2 * np.ones((2, 3))], [0, 1], "n_components"),
        ({"variant": "x"}, [np.ones((2, 3)), 2 * np.ones((2, 3))], [0, 1], "variant"),
    ],
)
def test_bad_input_raises_value_error(Est, params, X, y, match):
    with pytest.raises(ValueError, match=match):
        Est(**params).fit(X, y)


def test_fewer_texts_than_features():
    # 20 texts in 64 dimensions: Sxx is singular but for the default floor,
    # 4096 float32 unit roundoffs of each coordinate's second moment.
    from scipy import linalg

    rng = np.random.default_rng(0)
    X = [rng.normal(size=(6, 64)) for _ in range(20)]
    y = np.arange(20) % 2
    probe = NTPSSubspaceProbe(n_components=8).fit(X, y)
    assert probe.components_.shape == (8, 64)
    floor = 4096 * np.finfo(np.float32).eps / 2
    ctx = np.vstack([np.cumsum(H, axis=0)[:-1] for H in X])
    C0, C1 = ctx.T @ ctx, ctx.T @ np.vstack([H[1:] for H in X])
    P = np.array([H.mean(axis=0) for H in X])
    Sxx, Sxy = P.T @ P / 20, P.T @ np.eye(2)[y] / 20
    C0, Sxx = C0 + floor * np.diag(np.diag(C0)), Sxx + floor * np.diag(np.diag(Sxx))
    V = linalg.eigh(C1 @ C1.T, C0)[1][:, ::-1][:, :8]
    # The same subspace, and the share of the least-squares signal a probe on it keeps.
    np.testing.assert_allclose(linalg.subspace_angles(V, probe.components_.T), 0, atol=1e-6)
    whitened = (np.trace(Sxy.T @ V @ np.linalg.solve(V.T @ Sxx @ V, V.T @ Sxy))
                / np.trace(Sxy.T @ np.linalg.solve(Sxx, Sxy)))
    assert probe.ntps_ == pytest.approx(whitened, abs=1e-8)


def test_one_token_texts_count_for_perception_only():
    X, y = make_texts(n_texts=60, n_features=4, min_len=2, seed=2)
    ones = [np.ones((1, 4)) * 5, np.ones((1, 4)) * -5]
    base = NTPSScorer(n_components=2).fit(X, y)
    more = NTPSScorer(n_components=2).fit(X + ones, np.r_[y, 0, 1])
    np.testing.assert_allclose(np.abs(more.components_ @ base.components_.T).max(axis=1), 1,
                               rtol=1e-9)
    assert more.ntps_ != base.ntps_


API_CHECKS = [
    ec.check_estimator_cloneable,
    ec.check_estimator_tags_renamed,
    ec.check_valid_tag_types,
    ec.check_estimator_repr,
    ec.check_no_attributes_set_in_init,
    ec.check_do_not_raise_errors_in_init_or_set_params,
    ec.check_mixin_order,
    ec.check_get_params_invariance,
    ec.check_set_params,
    ec.check_parameters_default_constructible,
]


@pytest.mark.parametrize("Est", ESTIMATORS)
@pytest.mark.parametrize("check", API_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_api_checks(Est, check):
    # The data-driven checks feed 2-D arrays, which these estimators do not
    # take (tags say so); the API checks that need no data all apply.
    check(Est.__name__, Est())


def test_tags_are_honest():
    from sklearn.utils import get_tags

    for Est in ESTIMATORS:
        tags = get_tags(Est())
        assert not tags.input_tags.two_d_array and tags.input_tags.three_d_array
        assert tags.target_tags.required
    assert get_tags(NTPSSubspaceProbe()).estimator_type == "classifier"


def test_fewer_autoregressive_directions_than_k():
    # 6 texts of 3 tokens in 64 dimensions: rank(C0) = 12 < k = 16 used to
    # raise IndexError in fit while ntps_score returned a number.
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(3, 64)) for _ in range(6)]
    y = np.arange(6) % 2
    for Est in ESTIMATORS:
        est = Est(rtol=0).fit(X, y)
        assert est.n_components_ == 16 and est.components_.shape == (12, 64)
        assert est.ntps_ == pytest.approx(ntps_score(X, y, rtol=0))
        # The default floor makes C0 full rank: k rows.
        assert Est().fit(X, y).components_.shape == (16, 64)


def test_probe_feature_names_and_set_output():
    pd = pytest.importorskip("pandas")
    X, y = make_block_texts("predictable", n_texts=90)
    probe = NTPSSubspaceProbe(n_components=3).fit(X, y)
    np.testing.assert_array_equal(
        probe.get_feature_names_out(),
        ["ntpssubspaceprobe0", "ntpssubspaceprobe1", "ntpssubspaceprobe2"])
    frame = probe.set_output(transform="pandas").transform(X)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == list(
        probe.get_feature_names_out())


@pytest.mark.parametrize("Estimator", [NTPSScorer, NTPSSubspaceProbe])
def test_partial_fit_on_a_stream_equals_one_fit(Estimator):
    X, y = make_texts(n_texts=120, n_features=10, n_classes=3, min_len=1, seed=31)
    one = Estimator(n_components=4).fit(X, y)
    stream = Estimator(n_components=4)
    for lo in range(0, 120, 50):
        stream.partial_fit(X[lo : lo + 50], y[lo : lo + 50])
    assert len(stream.moments_) == 120
    np.testing.assert_allclose(stream.ntps_curve_, one.ntps_curve_, atol=1e-10)
    np.testing.assert_allclose(stream.excess_loss_curve_, one.excess_loss_curve_, atol=1e-10)
    np.testing.assert_allclose(np.abs(stream.components_ @ one.components_.T), np.eye(4),
                               atol=1e-8)
    if Estimator is NTPSSubspaceProbe:
        np.testing.assert_array_equal(stream.predict(X), one.predict(X))
    # fit starts over and keeps no stream; partial_fit then refuses to guess.
    stream.fit(X, y)
    assert not hasattr(stream, "moments_")
    with pytest.raises(ValueError, match="fitted with fit"):
        stream.partial_fit(X[:10], y[:10])


def test_partial_fit_checks_the_features_of_each_batch():
    X, y = make_texts(n_texts=40, n_features=6, seed=32)
    other, _ = make_texts(n_texts=40, n_features=7, seed=32)
    scorer = NTPSScorer(n_components=2).partial_fit(X, y)
    with pytest.raises(ValueError, match="7 features, but NTPSScorer is expecting 6 features"):
        scorer.partial_fit(other, y)
    assert len(scorer.moments_) == 40  # nothing lost


def sorted_stream(n_texts=120, n_classes=3, batch=25, seed=33):
    """Texts sorted by label, cut in batches: the first batches hold one class each."""
    X, y = make_texts(n_texts=n_texts, n_features=8, n_classes=n_classes, min_len=1, seed=seed)
    order = np.argsort(y, kind="stable")
    X, y = [X[i] for i in order], y[order]
    return X, y, [(X[lo : lo + batch], y[lo : lo + batch]) for lo in range(0, n_texts, batch)]


@pytest.mark.parametrize("Estimator", ESTIMATORS)
@pytest.mark.parametrize("classes", [None, [0, 1, 2]])
def test_partial_fit_on_a_stream_sorted_by_label_equals_one_fit(Estimator, classes):
    X, y, batches = sorted_stream()
    one = Estimator(n_components=3).fit(X, y)
    stream = Estimator(n_components=3)
    stream.partial_fit(*batches[0], classes=classes)
    assert len(np.unique(batches[0][1])) == 1
    # One class so far: the stream is kept, but there is no score yet.
    assert len(stream.moments_) == 25 and not hasattr(stream, "ntps_")
    with pytest.raises(NotFittedError, match="single class so far"):
        stream.score(*batches[0])
    for Xb, yb in batches[1:]:
        stream.partial_fit(Xb, yb, classes=classes)
    np.testing.assert_array_equal(stream.classes_, one.classes_)
    np.testing.assert_allclose(stream.ntps_curve_, one.ntps_curve_, atol=1e-10)
    np.testing.assert_allclose(stream.excess_loss_curve_, one.excess_loss_curve_, atol=1e-10)
    assert stream.score(X, y) == pytest.approx(one.score(X, y), abs=1e-10)


def test_partial_fit_classes_are_fixed_on_the_first_call():
    _, _, batches = sorted_stream()
    stream = NTPSScorer(n_components=2).partial_fit(*batches[0], classes=[0, 1])
    with pytest.raises(ValueError, match=r"y holds label\(s\) \[2\] outside classes=\[0, 1\]"):
        stream.partial_fit(*batches[-1])
    with pytest.raises(ValueError, match=r"got classes=\[0, 1, 2\].*classes=\[0, 1\] on the first"):
        stream.partial_fit(*batches[1], classes=[0, 1, 2])
    assert len(stream.moments_) == 25  # nothing added by a refused batch
    stream.partial_fit(*batches[1], classes=[1, 0])  # the same classes, in any order
    assert len(stream.moments_) == 50
    # A stream that started without classes cannot fix them later.
    free = NTPSScorer(n_components=2).partial_fit(*batches[0])
    with pytest.raises(ValueError, match="given none on the first call"):
        free.partial_fit(*batches[1], classes=[0, 1, 2])
    # The classes themselves: two at least, and labels of the first batch among them.
    with pytest.raises(ValueError, match=r"classes=\[0\] holds fewer than two classes"):
        NTPSScorer().partial_fit(*batches[0], classes=[0])
    with pytest.raises(ValueError, match="outside classes"):
        NTPSScorer().partial_fit(*batches[0], classes=[1, 2])
