"""The probe every score is judged by: a cross-validated logistic regression on the features.

Its result must be a property of the training texts, not of the order they
arrive in: the report, the studies, the pre-screen and
:class:`~sklearn_ntps.HFLoRAClassifier` all compare scores with it.
"""

from __future__ import annotations

import hashlib

import numpy as np
from sklearn.metrics import accuracy_score
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import _safe_indexing

from .._utils import log_grid
from .logistic_path import LogisticRegressionPathCV

__all__ = ["PROBE_CS", "default_probe"]

# The probe's C is chosen among these (1e-4 .. 100), in this ascending order: a tie goes to the
# first, the smallest C.
PROBE_CS = log_grid(-4, 2, 7)
# Log-loss over 3 repeats of 3 stratified folds. On BANKING77's features at the report's size
# (628 x 576, 77 classes, 3 layers), accuracy on one shuffled split moved C over 0.1 .. 100 and
# held-out accuracy by an SD of 0.6 to 1.0 points when the rows were reshuffled; 3 repeats kept
# C over 8 fold seeds (SD 0.2 to 0.3 points), where 1 or 2 did not always, and chose 5 repeats'
# C at all 31 layers at 3.0x the old fit's cost, against 5.1x (docs/performance.md).
_N_SPLITS, _N_REPEATS = 3, 3


def default_probe(*, n_jobs=-1):
    """The probe every score is judged by: a logistic regression on standardised features.

    C is chosen among :data:`PROBE_CS` (1e-4 to 100) by the mean log-loss
    (``scoring="neg_log_loss"``) over stratified 3-fold cross-validation
    repeated 3 times on the training texts
    (``RepeatedStratifiedKFold(n_splits=3, n_repeats=3, random_state=0)``);
    a tie goes to the smallest C. The model is then refitted on every
    training text with that C. ``score`` is the accuracy. Each fold's path
    over C starts at the log class frequencies rather than at zero
    (:class:`~sklearn_ntps.choice.logistic_path.LogisticRegressionPathCV`):
    the same objective as ``LogisticRegressionCV``, in about 40% fewer
    iterations, each solved by the package's L-BFGS (the iterates of
    L-BFGS-B, at about 0.72 of the time; docs/performance.md).

    The result does not depend on the order of the rows: ``fit`` first puts
    them in a canonical order (by a hash of each row's float64 bytes, then
    its label), so the same rows in any order give the same folds, the same C
    and bit-identical coefficients. Its ``fit`` also runs every BLAS pool on
    one thread. Classes with fewer members than folds are allowed
    (scikit-learn warns); labels may be of any sortable type.

    Parameters
    ----------
    n_jobs : int or None, default=-1
        Processes the nine folds' fits run in (-1: one per core). Each fold
        is fitted alone, with one BLAS thread, so any value gives the same
        bits; on 2 cores two processes took a layer's fit from 9.2 to 5.9 s
        with scikit-learn's solver (docs/performance.md). None runs them
        here, one after another.

    Returns
    -------
    probe : Pipeline
        Unfitted: a :class:`~sklearn.preprocessing.StandardScaler`, then a
        :class:`~sklearn_ntps.choice.logistic_path.LogisticRegressionPathCV`
        (pure L2, ``max_iter=1000``), the last step, whose ``C_`` is the
        chosen C once fitted.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps import default_probe
    >>> from sklearn_ntps.choice.probe import PROBE_CS
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(60) % 3
    >>> X = rng.normal(size=(60, 8)) + np.eye(3, 8)[y]
    >>> probe = default_probe().fit(X, y)
    >>> probe[-1].C_ in PROBE_CS
    True
    >>> shuffled = rng.permutation(60)  # the same texts in another order
    >>> again = default_probe().fit(X[shuffled], y[shuffled])
    >>> bool(np.array_equal(again[-1].coef_, probe[-1].coef_))
    True
    >>> 0.0 <= again.score(X, y) <= 1.0
    True
    """
    cv = RepeatedStratifiedKFold(n_splits=_N_SPLITS, n_repeats=_N_REPEATS,
                                 random_state=0)
    return _ProbePipeline(make_pipeline(StandardScaler(), LogisticRegressionPathCV(
        Cs=list(PROBE_CS), cv=cv, max_iter=1000, scoring="neg_log_loss", n_jobs=n_jobs)).steps)


class _OneBLASThreadPipeline(Pipeline):
    """A Pipeline whose ``fit`` runs every BLAS pool on one thread.

    The probe's L-BFGS alternates NumPy's and SciPy's OpenBLAS on small products, right after
    torch's pool was busy with a forward pass: a 1,000 x 576 fit of 20 classes took 2.46 s in a
    plain Pipeline and 0.37 s here on an idle 2-core machine, 8.55 s against 0.37 s with one core
    busy (benchmarks/bench_probe_threads.py).
    """

    def fit(self, X, y=None, **params):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):
            return super().fit(X, y, **params)


class _ProbePipeline(_OneBLASThreadPipeline):
    """A :class:`_OneBLASThreadPipeline` fitting its rows in a canonical order, scored by accuracy.

    The folds of a cross-validation are drawn from the row order, and floating-point sums
    depend on it too, so sorting the rows first makes the whole fit a function of the set of
    rows: the same folds, the same C, the same bits. ``score`` is accuracy, as every caller
    (the report, the pre-screen, ``cross_val_score``) reads it, although the last step's own
    ``score`` is its cross-validation's log-loss.
    """

    def fit(self, X, y=None, **params):
        n = len(X)
        # Per-row fit parameters (a sample_weight) follow their rows, and break ties between
        # equal rows of equal labels, which they would otherwise make unequal.
        per_row = [k for k, v in params.items() if _per_row(v, n)]
        order = _canonical_order(X, y, *(params[k] for k in per_row))
        params = {**params, **{k: _safe_indexing(params[k], order) for k in per_row}}
        return super().fit(_safe_indexing(X, order),
                           None if y is None else _safe_indexing(y, order), **params)

    def score(self, X, y=None, sample_weight=None):
        """The accuracy of ``predict`` on ``X``."""
        return accuracy_score(y, self.predict(X), sample_weight=sample_weight)


def _canonical_order(X, y, *columns) -> np.ndarray:
    """The indices that sort the rows by a hash of their bytes, then by label, then by ``columns``.

    The hash is of each row's float64 bytes; each of ``columns`` holds per-row values.
    Little-endian bytes, so the order is the same on every machine. Rows equal in all of these
    are interchangeable, so how their tie falls does not matter.
    """
    rows = np.ascontiguousarray(X, dtype="<f8").reshape(len(X), -1)
    keys = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]
    columns = columns if y is None else (y, *columns)
    # Python scalars, so that labels of any sortable type compare as they sort.
    ties = list(zip(*(np.asarray(c).tolist() for c in columns))) or [()] * len(keys)
    return np.array(sorted(range(len(keys)), key=lambda i: (keys[i], ties[i])), dtype=np.intp)


def _per_row(value, n) -> bool:
    return (hasattr(value, "__len__") and not isinstance(value, (str, bytes, dict))
            and len(value) == n)

