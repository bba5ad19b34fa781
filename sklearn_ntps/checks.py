"""Input checks every stage shares: labels, the range of feature values, number parameters.

One place decides each of them, so NTPS, its peers and the LoRA classifier
encode labels alike and reject the same bad values with the same message.
numpy and scikit-learn's parameter validation only, so the lowest stage
(:mod:`sklearn_ntps.states.moments`) can import it.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import DataConversionWarning
from sklearn.utils import check_consistent_length
from sklearn.utils.multiclass import check_classification_targets

from ._sklearn_compat import Interval

__all__ = ["MAX_VALUE", "NumberInterval", "check_features", "check_finite_range",
           "check_labelled", "class_sums", "encode_labels", "labellings_class_sums"]

# Values must lie within float32's range: beyond it their float64 squares (sums
# of squared contexts, Ledoit-Wolf's fourth moments) overflow.
MAX_VALUE = float(np.finfo(np.float32).max)


class NumberInterval(Interval):
    """An :class:`~sklearn.utils._param_validation.Interval` that rejects bools.

    scikit-learn's ``Interval(Integral, ...)`` takes ``True`` for 1, and
    ``Interval(Real, ...)`` for 1.0; a bool passed as a number of components,
    a shrinkage or a floor is a mistake, so it fails the constraint.
    """

    def is_satisfied_by(self, val):
        """Whether ``val`` is a number in the interval, and not a bool.

        Parameters
        ----------
        val : object
            The value of the parameter.

        Returns
        -------
        bool
            False for ``True``, ``False`` and numpy bools; otherwise what the
            interval itself says.
        """
        return not isinstance(val, (bool, np.bool_)) and super().is_satisfied_by(val)


def encode_labels(y, classes=None, *, min_classes=2):
    """Encode class labels as ``0 .. n_classes - 1``, in sorted label order.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels of any type that sorts (a column vector is taken, with a
        ``DataConversionWarning``, as scikit-learn does).
    classes : array-like, default=None
        Every label ``y`` may hold, as given to ``partial_fit(classes=...)``:
        the codes then index ``np.unique(classes)``, and a label outside it
        is an error; ``y`` may then hold a single class (a batch of a stream).
    min_classes : {2, 1}, default=2
        The fewest distinct labels of ``classes`` when given, else of ``y``:
        a score of how features tell classes apart needs two where it is
        computed, and a batch of a stream may hold one.

    Returns
    -------
    classes : ndarray of shape (n_classes,)
        The sorted distinct labels (``np.unique(classes)`` when given).
    codes : ndarray of shape (n_samples,), int
        Each label's index in ``classes``.

    Raises
    ------
    ValueError
        When ``y`` is not 1-D, mixes labels that cannot be sorted together,
        holds fewer than ``min_classes`` classes or a label outside ``classes``.

    Examples
    --------
    >>> from sklearn_ntps.checks import encode_labels
    >>> classes, codes = encode_labels(["b", "a", "b"])
    >>> classes.tolist(), codes.tolist()
    (['a', 'b'], [1, 0, 1])
    >>> encode_labels(["b", "b"], classes=["a", "b", "c"])[1].tolist()
    [1, 1]
    """
    present, codes = _unique(_labels_1d(y, "y"), "y")
    if classes is not None:
        classes = _unique(_labels_1d(classes, "classes"), "classes")[0]
        if classes.size < min_classes:
            raise ValueError(f"classes={classes.tolist()} holds fewer than two classes; "
                             "at least two are needed.")
        index, known = np.zeros(present.size, dtype=np.intp), np.zeros(present.size, bool)
        if classes.size:
            try:
                index = np.minimum(np.searchsorted(classes, present), classes.size - 1)
                known = np.asarray(classes[index] == present, dtype=bool).reshape(-1)
            except TypeError:
                pass  # no label of y sorts among them: all are outside
        outside = present[~known]
        if outside.size:
            raise ValueError(f"y holds label(s) {outside.tolist()} outside "
                             f"classes={classes.tolist()}.")
        return classes, index[codes]
    if present.size < min_classes:
        raise ValueError("y holds no label." if present.size == 0 else
                         f"y has a single class ({present.tolist()[0]!r}); at least two "
                         "classes are needed.")
    return present, codes


def check_labelled(X, y, *, estimator=None):
    """The labels of a labelled fit, checked once for every stage: classes and codes.

    ``y`` must be given, as long as ``X``, hold at least two classes of labels
    that sort (:func:`encode_labels`) and be what scikit-learn's classifiers
    accept (no continuous targets), checked in that order so that the first
    message names what is wrong.

    Parameters
    ----------
    X : sized
        The texts, features or :class:`~sklearn_ntps.Moments` that ``y`` labels.
    y : array-like of shape (n_samples,) or None
    estimator : object, default=None
        Named in the error when ``y`` is None.

    Returns
    -------
    classes : ndarray of shape (n_classes,)
        The sorted distinct labels.
    codes : ndarray of shape (n_samples,), int
        Each label's index in ``classes``.

    Raises
    ------
    ValueError
        When ``y`` is None, of another length than ``X``, or fails
        :func:`encode_labels` or ``check_classification_targets``.

    Examples
    --------
    >>> from sklearn_ntps.checks import check_labelled
    >>> classes, codes = check_labelled([[0.0], [1.0], [2.0]], ["b", "a", "b"])
    >>> classes.tolist(), codes.tolist()
    (['a', 'b'], [1, 0, 1])
    """
    if y is None:
        name = "This step" if estimator is None else type(estimator).__name__
        raise ValueError(f"{name} requires y to be passed, but the target y is None: it "
                         "needs class labels.")
    check_consistent_length(X, y)
    classes, codes = encode_labels(y)
    check_classification_targets(y)
    return classes, codes


def class_sums(A, codes, n_classes) -> np.ndarray:
    """``onehot(codes).T @ A``: the sum of ``A``'s rows of each class, in class order.

    One sort and one ``np.add.reduceat``, ``O(n log n + n p)``: what every label-dependent
    part of a score computes, once for the labels and once per permutation of them.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.checks import class_sums
    >>> class_sums(np.arange(8.0).reshape(4, 2), np.array([1, 0, 1, 2]), 4)
    array([[2., 3.],
           [4., 6.],
           [6., 7.],
           [0., 0.]])
    """
    A = np.asarray(A, dtype=np.float64)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=n_classes)
    out = np.zeros((n_classes, *A.shape[1:]))
    present = counts > 0
    starts = np.r_[0, np.cumsum(counts)[:-1]][present]
    out[present] = np.add.reduceat(A[order], starts, axis=0)
    return out


def labellings_class_sums(A, labellings, n_classes) -> tuple:
    """:func:`class_sums` of several labellings at once, stacked, and each class's count.

    One sparse product (a one-hot row per labelling and class, ``n`` entries per
    labelling): the score of 30 shuffles of the labels then reads ``A`` once,
    where a gather per labelling copies it 30 times.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.checks import labellings_class_sums
    >>> sums, counts = labellings_class_sums(np.arange(3.0)[:, None], [[0, 1, 1], [1, 0, 0]], 2)
    >>> sums.ravel().tolist(), counts.tolist()
    ([0.0, 3.0, 3.0, 0.0], [1, 2, 2, 1])
    """
    from scipy.sparse import csr_array

    codes = np.asarray(labellings)
    n_labellings, n = codes.shape
    rows = (np.arange(n_labellings)[:, None] * n_classes + codes).ravel()
    onehot = csr_array((np.ones(rows.size), (rows, np.tile(np.arange(n), n_labellings))),
                       shape=(n_labellings * n_classes, n))
    return onehot @ np.asarray(A, dtype=np.float64), np.bincount(
        rows, minlength=n_labellings * n_classes)


def _unique(y, name):
    """``np.unique(y, return_inverse=True)``, with a message for labels that do not sort."""
    try:
        present, codes = np.unique(y, return_inverse=True)
    except TypeError as exc:
        raise ValueError(f"{name} mixes labels that cannot be compared ({exc}); "
                         "use labels of one type.") from None
    return present, codes.reshape(-1)


def _labels_1d(y, name):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn(f"A column-vector {name} was passed when a 1d array was expected; it "
                      "is read as one.", DataConversionWarning, stacklevel=3)
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of labels, got shape {y.shape}.")
    return y


def check_finite_range(values, what: str) -> float:
    """Check that float ``values`` are finite and within float32's range.

    Parameters
    ----------
    values : ndarray of float
    what : str
        What they are, for the message: "the features", "text 3".

    Returns
    -------
    float
        The largest magnitude, 0 for an empty array.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.checks import check_finite_range
    >>> check_finite_range(np.array([[1.0, -3.0]]), "the features")
    3.0
    >>> check_finite_range(np.array([np.nan]), "text 0")
    Traceback (most recent call last):
    ...
    ValueError: NaN or infinity in text 0.
    """
    if not np.isfinite(values).all():
        raise ValueError(f"NaN or infinity in {what}.")
    peak = float(np.abs(values).max(initial=0.0))
    if peak > MAX_VALUE:
        raise ValueError(
            f"Values as large as {peak:.3g} in {what}, beyond float32's range "
            f"({MAX_VALUE:.3g}): their float64 squares and fourth moments would overflow. "
            "Rescale them (every score here is invariant to a global scale)."
        )
    return peak


def check_features(features, y=None, *, score=None):
    """Validate a feature matrix, and labels if given, for the peer scores.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Real features, any float dtype; copied to float64.
    y : array-like of shape (n_samples,), default=None
        Class labels of any type that sorts, at least two distinct ones
        (:func:`encode_labels`).
    score : str, default=None
        The name of a score that needs labels: ``y=None`` is then an error
        that names it.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float64
        The features, returned alone when ``y`` is None.
    codes : ndarray of shape (n_samples,), int
        ``y`` encoded as ``0 .. n_classes - 1`` in sorted label order (only
        when ``y`` is given).

    Raises
    ------
    ValueError
        When ``features`` is not 2-D, has fewer than 2 samples, complex or
        non-finite values or values beyond float32's range, or when ``y``
        has another length than ``features`` or fails :func:`encode_labels`.

    Examples
    --------
    >>> from sklearn_ntps.checks import check_features
    >>> X, codes = check_features([[0, 1], [2, 3], [4, 5]], ["b", "a", "b"])
    >>> X.dtype, codes.tolist()
    (dtype('float64'), [1, 0, 1])
    """
    if score is not None and y is None:
        raise ValueError(f"{score} needs class labels y, got None.")
    if np.iscomplexobj(features):
        raise ValueError("features are complex; the scores need real features.")
    X = np.array(features, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(
            f"features must be a 2-D array (n_samples, n_features), got {X.ndim} dimension(s)."
        )
    if X.shape[0] < 2:
        raise ValueError(f"features must have at least 2 samples, got {X.shape[0]}.")
    if X.shape[1] < 1:
        raise ValueError("features must have at least 1 feature column, got 0.")
    check_finite_range(X, "the features")
    if y is None:
        return X
    y = np.asarray(y)
    if y.ndim and y.shape[0] != X.shape[0]:
        raise ValueError(
            f"features and y have different lengths: {X.shape[0]} samples but {y.shape[0]} labels."
        )
    return X, encode_labels(y)[1]
