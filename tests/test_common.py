"""Checks every estimator of the package passes: scikit-learn's own, and ours on ragged input."""

import copy
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks as ec
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_ntps.scores.chance import ChanceLevelWarning

from builders import DATA_FREE_CHECKS, make_texts, registry

REGISTRY = registry()
PEERS = REGISTRY["peers"]
SCORERS = REGISTRY["scorers"]
EVERY_ESTIMATOR = [*SCORERS, *REGISTRY["on_texts"]]
METHODS = ["score", "transform", "predict", "predict_proba", "decision_function",
           "get_feature_names_out"]


def test_the_registry_holds_every_public_estimator():
    import inspect

    from sklearn.base import BaseEstimator

    import sklearn_ntps

    public = {name for name in sklearn_ntps.__all__
              if inspect.isclass(obj := getattr(sklearn_ntps, name))
              and issubclass(obj, BaseEstimator)}
    assert public == {type(e).__name__ for e in EVERY_ESTIMATOR}


@parametrize_with_checks(PEERS)
def test_sklearn_check_estimator_on_the_peers(estimator, check):
    # The peers also take a plain 2-D matrix of pooled features, so every
    # data-driven check of scikit-learn applies to them.
    check(estimator)


@pytest.mark.parametrize("estimator", EVERY_ESTIMATOR, ids=repr)
@pytest.mark.parametrize("check", DATA_FREE_CHECKS)
def test_sklearn_data_free_checks(estimator, check):
    getattr(ec, check)(type(estimator).__name__, clone(estimator))


def ragged(seed=0, n_texts=60):
    X, y = make_texts(n_texts=n_texts, n_features=6, min_len=1, max_len=9, seed=seed)
    return X, y


@pytest.mark.parametrize("estimator", SCORERS, ids=repr)
def test_fit_leaves_parameters_and_inputs_unchanged(estimator):
    X, y = ragged()
    X_copy, y_copy = copy.deepcopy(X), y.copy()
    params = copy.deepcopy(estimator.get_params())
    est = clone(estimator).fit(X, y)
    assert repr(est.get_params()) == repr(params)
    for a, b in zip(X, X_copy):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(y, y_copy)


@pytest.mark.parametrize("estimator", SCORERS, ids=repr)
def test_every_method_raises_not_fitted(estimator):
    X, y = ragged()
    est = clone(estimator)
    methods = [m for m in METHODS if hasattr(est, m)]
    assert "score" in methods
    for name in methods:
        method = getattr(est, name)
        with pytest.raises(NotFittedError):
            method() if name == "get_feature_names_out" else \
                method(X, y) if name == "score" else method(X)


@pytest.mark.parametrize("estimator", SCORERS, ids=repr)
def test_results_do_not_depend_on_the_order_of_the_texts(estimator):
    X, y = ragged(seed=1)
    perm = np.random.default_rng(0).permutation(len(X))
    a = clone(estimator).fit(X, y)
    b = clone(estimator).fit([X[i] for i in perm], y[perm])
    assert a.score_ == pytest.approx(b.score_, rel=1e-9, abs=1e-12)
    assert a.score(X, y) == pytest.approx(b.score([X[i] for i in perm], y[perm]), rel=1e-9,
                                          abs=1e-12)


def test_set_output_on_every_transformer(tiny_llama, ntps_cache):
    from sklearn_ntps import HFEmbeddingTransformer, NTPSSubspaceProbe

    pd = pytest.importorskip("pandas")
    X, y = ragged()
    texts = ["my card was declined", "the film was good", "hello there", "free prize call now"]
    for est, data, target in (
        (NTPSSubspaceProbe(n_components=2), X, y),
        (HFEmbeddingTransformer(model_name_or_path=tiny_llama, progress=False), texts, None),
    ):
        out = clone(est).set_output(transform="pandas").fit(data, target).transform(data)
        assert isinstance(out, pd.DataFrame) and out.shape[0] == len(data)


@pytest.mark.parametrize("estimator", SCORERS, ids=repr)
def test_no_warnings_on_ordinary_ragged_input(estimator):
    X, y = ragged(seed=2, n_texts=80)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Random labels: that a score sits at its chance level is the right thing to say
        # (tests/test_chance.py); nothing else may warn.
        warnings.simplefilter("ignore", ChanceLevelWarning)
        clone(estimator).fit(X, y).score(X, y)


DETERMINISM = """
import sys, numpy as np
from sklearn_ntps import NTPSScorer, LogMEScorer, ntps_curve
data = np.load(sys.argv[1], allow_pickle=True)
X, y = list(data["X"]), data["y"]
out = [NTPSScorer().fit(X, y).score_, NTPSScorer(variant="paper", centering=True,
       shrinkage="ledoit-wolf").fit(X, y).score_, LogMEScorer().fit(X, y).score_]
print(" ".join(float(v).hex() for v in [*out, *ntps_curve(X, y)]))
"""


def test_bit_identical_across_runs_and_processes(tmp_path):
    import subprocess
    import sys

    X, y = ragged(seed=3, n_texts=70)
    path = tmp_path / "data.npz"
    np.savez(path, X=np.array(X, dtype=object), y=y)
    script = tmp_path / "run.py"
    script.write_text(DETERMINISM)
    runs = [subprocess.run([sys.executable, str(script), str(path)], capture_output=True,
                           text=True, check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0].split()) == 3 + 6
    # And in this process, twice: the same bits.
    from sklearn_ntps import NTPSScorer, ntps_curve

    here = [NTPSScorer().fit(X, y).score_ for _ in range(2)]
    assert here[0] == here[1] == float.fromhex(runs[0].split()[0])
    np.testing.assert_array_equal(ntps_curve(X, y), [float.fromhex(v) for v in runs[0].split()[3:]])
