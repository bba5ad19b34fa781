"""sklearn_ntps._sklearn_compat: every private scikit-learn name the package uses, behaving as the
package relies on. A scikit-learn release that moves or changes one fails here first, by name."""

from numbers import Integral, Real

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_ntps import _sklearn_compat as compat


def test_every_name_is_exported():
    assert sorted(compat.__all__) == sorted([
        "HasMethods", "Interval", "LinearClassifierMixin", "RealNotInt", "StrOptions",
        "_check_sample_weight", "_fit_context", "_wrap_data_with_container", "array_namespace",
        "device", "is_array_api_obj", "is_numpy_array", "validate_params"])
    for name in compat.__all__:
        assert getattr(compat, name) is not None, name


def test_the_constraints():
    assert compat.Interval(Real, 0, 1, closed="right").is_satisfied_by(1.0)
    assert not compat.Interval(Real, 0, 1, closed="right").is_satisfied_by(0.0)
    assert compat.Interval(Integral, 1, None, closed="left").is_satisfied_by(7)
    assert not compat.Interval(Integral, 1, None, closed="left").is_satisfied_by(0)
    assert compat.Interval(compat.RealNotInt, 0, 1, closed="left").is_satisfied_by(0.5)
    assert not compat.Interval(compat.RealNotInt, 0, 1, closed="left").is_satisfied_by(0)
    assert compat.StrOptions({"a", "b"}).is_satisfied_by("a")
    assert not compat.StrOptions({"a", "b"}).is_satisfied_by("c")
    fits = compat.HasMethods(["fit", "predict"])
    def method(self):
        return None

    assert fits.is_satisfied_by(type("Model", (), {"fit": method, "predict": method})())
    assert not fits.is_satisfied_by(type("Half", (), {"fit": method})())


def test_the_linear_classifier_mixin_and_sample_weight_check():
    class Linear(compat.LinearClassifierMixin, BaseEstimator):
        def fit(self, X, y):
            return self

    est = Linear()
    est.coef_, est.intercept_, est.classes_ = np.array([[1.0, -1.0]]), np.array([0.5]), \
        np.array(["no", "yes"])
    est.n_features_in_ = 2
    np.testing.assert_allclose(est.decision_function(np.array([[2.0, 1.0]])), [1.5])
    assert est.predict(np.array([[0.0, 1.0], [1.0, 0.0]])).tolist() == ["no", "yes"]
    np.testing.assert_array_equal(compat._check_sample_weight(None, np.zeros((3, 2))), np.ones(3))
    with pytest.raises(ValueError):
        compat._check_sample_weight(np.ones(2), np.zeros((3, 2)))


def test_validate_params_rejects_with_a_value_error():
    @compat.validate_params({"k": [compat.Interval(Integral, 1, None, closed="left")]},
                            prefer_skip_nested_validation=True)
    def twice(k):
        return 2 * k

    assert twice(3) == 6
    message = r"'k' parameter of .*twice must be an int in the range \[1, inf\)"
    with pytest.raises(InvalidParameterError, match=message) as info:
        twice(0)
    assert isinstance(info.value, ValueError)  # what the package's callers catch


class Doubler(TransformerMixin, BaseEstimator):
    _parameter_constraints: dict = {"factor": [compat.Interval(Real, 0, None, closed="neither")]}

    def __init__(self, factor=2.0):
        self.factor = factor

    @compat._fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        self.n_features_in_ = np.shape(X)[1]
        return self

    def transform(self, X):
        return compat._wrap_data_with_container("transform", np.asarray(X) * self.factor, X, self)

    def get_feature_names_out(self, input_features=None):
        return np.array([f"x{i}" for i in range(self.n_features_in_)], dtype=object)


def test_fit_context_validates_the_parameters():
    assert Doubler().fit([[1.0]]).n_features_in_ == 1
    with pytest.raises(InvalidParameterError, match="'factor' parameter of Doubler"):
        Doubler(factor=-1.0).fit([[1.0]])


def test_wrap_data_with_container_follows_set_output():
    X = [[1.0, 2.0], [3.0, 4.0]]
    out = Doubler().fit(X).transform(X)
    assert isinstance(out, np.ndarray) and out.tolist() == [[2.0, 4.0], [6.0, 8.0]]
    pd = pytest.importorskip("pandas")
    frame = Doubler().set_output(transform="pandas").fit(X).transform(X)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["x0", "x1"]
    assert frame.to_numpy().tolist() == [[2.0, 4.0], [6.0, 8.0]]


def test_the_array_api_helpers_on_numpy_and_torch():
    a = np.ones((2, 3))
    assert compat.is_numpy_array(a) and compat.is_array_api_obj(a)
    assert not compat.is_numpy_array([1.0]) and not compat.is_array_api_obj([1.0])
    assert compat.device(a) == "cpu"
    assert compat.array_namespace(a).sum(compat.array_namespace(a).asarray(a)) == 6.0
    torch = pytest.importorskip("torch")
    t = torch.ones(2, 3, dtype=torch.float64)
    assert compat.is_array_api_obj(t) and not compat.is_numpy_array(t)
    assert compat.device(t) == torch.device("cpu")
    xp = compat.array_namespace(t)
    total = xp.sum(xp.concat([t, t], axis=1))
    assert isinstance(total, torch.Tensor) and float(total) == 12.0
