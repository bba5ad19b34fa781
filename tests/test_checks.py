"""sklearn_ntps.checks: the input checks every stage shares (labels, value range, features, number
constraints), on inputs whose answers are known."""

import warnings
from numbers import Integral, Real

import numpy as np
import pytest
from sklearn.exceptions import DataConversionWarning

from sklearn_ntps.checks import (
    MAX_VALUE,
    NumberInterval,
    check_features,
    check_finite_range,
    class_sums,
    encode_labels,
    labellings_class_sums,
)


def test_number_interval_rejects_bools():
    k = NumberInterval(Integral, 1, None, closed="left")
    assert k.is_satisfied_by(1) and k.is_satisfied_by(np.int64(4))
    assert not k.is_satisfied_by(True) and not k.is_satisfied_by(np.True_)
    assert not k.is_satisfied_by(0)
    fraction = NumberInterval(Real, 0, 1, closed="right")
    assert fraction.is_satisfied_by(1.0) and fraction.is_satisfied_by(0.25)
    assert not fraction.is_satisfied_by(True) and not fraction.is_satisfied_by(0.0)


@pytest.mark.parametrize("y, classes, codes", [
    (["b", "a", "b"], ["a", "b"], [1, 0, 1]),
    ([3, 1, 2, 3], [1, 2, 3], [2, 0, 1, 2]),
    ([0.5, 0.25, 0.5], [0.25, 0.5], [1, 0, 1]),
    ([True, False], [False, True], [1, 0]),
])
def test_encode_labels_in_sorted_order(y, classes, codes):
    got_classes, got_codes = encode_labels(y)
    assert got_classes.tolist() == classes and got_codes.tolist() == codes
    assert got_codes.dtype.kind == "i"


def test_encode_labels_against_declared_classes():
    classes, codes = encode_labels(["c", "a"], classes=["c", "b", "a"])
    assert classes.tolist() == ["a", "b", "c"] and codes.tolist() == [2, 0]
    assert encode_labels(["b", "b"], classes=["a", "b"])[1].tolist() == [1, 1]  # one class: ok
    assert encode_labels(["b"], min_classes=1)[0].tolist() == ["b"]
    with pytest.raises(ValueError, match=r"y holds label\(s\) \['z'\] outside "
                                         r"classes=\['a', 'b'\]\."):
        encode_labels(["a", "z"], classes=["a", "b"])
    with pytest.raises(ValueError, match=r"y holds label\(s\) \[1\] outside"):
        encode_labels([1], classes=["a", "b"])  # labels that do not sort among the classes
    with pytest.raises(ValueError, match=r"classes=\['a'\] holds fewer than two classes"):
        encode_labels(["a"], classes=["a"])


def test_encode_labels_says_what_is_wrong():
    with pytest.raises(ValueError, match=r"y has a single class \('a'\); at least two"):
        encode_labels(["a", "a"])
    with pytest.raises(ValueError, match=r"^y holds no label\.$"):
        encode_labels([])
    with pytest.raises(ValueError, match="mixes labels that cannot be compared"):
        encode_labels(np.array(["a", 1, None], dtype=object))
    with pytest.raises(ValueError, match=r"must be a 1-D array of labels, got shape \(2, 2\)"):
        encode_labels([[0, 1], [1, 0]])
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        classes, codes = encode_labels([[1], [0], [1]])
    assert classes.tolist() == [0, 1] and codes.tolist() == [1, 0, 1]


def test_check_finite_range():
    assert check_finite_range(np.array([[1.0, -3.0], [2.0, 0.5]]), "the features") == 3.0
    assert check_finite_range(np.zeros((0, 4)), "text 2") == 0.0
    assert check_finite_range(np.array([-MAX_VALUE]), "text 0") == MAX_VALUE
    assert MAX_VALUE == float(np.finfo(np.float32).max)
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match=r"^NaN or infinity in text 3\.$"):
            check_finite_range(np.array([1.0, bad]), "text 3")
    with pytest.raises(ValueError, match=r"Values as large as 1e\+39 in the features, beyond "
                                         r"float32's range \(3\.4e\+38\)"):
        check_finite_range(np.array([1e39]), "the features")


def test_check_features():
    X, codes = check_features([[0, 1], [2, 3], [4, 5]], ["b", "a", "b"])
    assert X.dtype == np.float64 and X.tolist() == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    assert codes.tolist() == [1, 0, 1]
    F = np.ones((2, 2), dtype=np.float32)
    out = check_features(F)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    out[0, 0] = 5.0
    assert F[0, 0] == 1.0  # a copy
    cases = [
        (([[1.0], [2.0]], None), {"score": "LogME"}, r"^LogME needs class labels y, got None\.$"),
        ((np.ones((2, 2)) + 1j,), {}, "features are complex"),
        ((np.ones(3),), {}, r"must be a 2-D array \(n_samples, n_features\), got 1 dimension"),
        ((np.ones((1, 3)),), {}, "at least 2 samples, got 1"),
        ((np.ones((3, 0)),), {}, "at least 1 feature column, got 0"),
        ((np.array([[1.0], [np.nan]]),), {}, "NaN or infinity in the features"),
        ((np.ones((3, 2)), [0, 1]), {}, "3 samples but 2 labels"),
        ((np.ones((3, 2)), [0, 0, 0]), {}, "single class"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            check_features(*args, **kwargs)


def test_labellings_class_sums_stacks_class_sums():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(40, 3))
    labellings = [rng.integers(0, 5, size=40) for _ in range(4)]
    labellings[2][labellings[2] == 1] = 0  # a class left empty in one labelling
    sums, counts = labellings_class_sums(A, labellings, 5)
    np.testing.assert_allclose(sums, np.vstack([class_sums(A, c, 5) for c in labellings]),
                               rtol=1e-12, atol=1e-12)
    assert counts.tolist() == np.concatenate([np.bincount(c, minlength=5)
                                              for c in labellings]).tolist()
    assert not sums[2 * 5 + 1].any()


def test_class_sums():
    A = np.arange(8.0).reshape(4, 2)
    np.testing.assert_array_equal(class_sums(A, np.array([1, 0, 1, 2]), 4),
                                  [[2.0, 3.0], [4.0, 6.0], [6.0, 7.0], [0.0, 0.0]])
    # The definition, onehot(codes).T @ A, on random rows (3-D too) and classes left empty.
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 5, size=40)
    codes[codes == 3] = 4
    onehot = np.eye(6)[codes]
    B = rng.normal(size=(40, 3))
    np.testing.assert_allclose(class_sums(B, codes, 6), onehot.T @ B, rtol=1e-12, atol=1e-12)
    C = rng.normal(size=(40, 2, 3))
    np.testing.assert_allclose(class_sums(C, codes, 6), np.einsum("nc,nij->cij", onehot, C),
                               rtol=1e-12, atol=1e-12)
    assert not class_sums(B, codes, 6)[[3, 5]].any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert class_sums(np.ones((3, 2), dtype=np.int64), np.array([0, 0, 1]), 2).tolist() == [
            [2.0, 2.0], [1.0, 1.0]]


def test_check_labelled_encodes_once_in_sorted_label_order():
    from sklearn_ntps.checks import check_labelled

    classes, codes = check_labelled(["x", "y", "z"], ["b", "a", "b"])
    assert classes.tolist() == ["a", "b"] and codes.tolist() == [1, 0, 1]


@pytest.mark.parametrize("y, message", [
    (None, "Thing requires y to be passed"),
    ([0, 1], "inconsistent numbers of samples"),
    ([1, 1, 1], "a single class"),
    ([0.5, 1.5, 2.5], "Unknown label type"),
])
def test_check_labelled_names_what_is_wrong_first(y, message):
    from sklearn_ntps.checks import check_labelled

    class Thing:
        pass

    with pytest.raises(ValueError, match=message):
        check_labelled([[0], [1], [2]], y, estimator=Thing())
