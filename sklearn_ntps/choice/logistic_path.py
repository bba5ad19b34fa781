"""The probe's cross-validated logistic regression: warm starts along C from the class frequencies.

scikit-learn's ``LogisticRegressionCV`` starts every fold's path at zero. With L2 on the weights
but not on the intercepts, the first, smallest C (1e-4) then spends most of a fold's iterations
moving the intercepts: their curvature is about 1/K against a penalty near 1/C on the weights, so
L-BFGS crawls. Its optimum there is, to within the penalty, weights near zero and intercepts at
the log class frequencies; starting at that point took the first C on BANKING77's features
(600 x 576, 77 classes) from 114-135 iterations to 10-18 and a layer's nine folds from 9.0-15.7 s
to 5.2-11.5 s, with the same C at every layer tried (docs/performance.md). The objective, the
folds, the scoring and the refit are ``LogisticRegressionCV``'s, and so are the solver's steps
(:mod:`._lbfgs` takes L-BFGS-B's on this unbounded problem, in a third less time); only where
each path starts differs, so the coefficients agree with it to the solver's tolerance, not to
the bit.
"""

from __future__ import annotations

import numpy as np
from joblib import Parallel, delayed
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import check_cv
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from .._sklearn_compat import LinearClassifierMixin, _check_sample_weight
from ._lbfgs import LogisticObjective, minimize_lbfgs

__all__ = ["LogisticRegressionPathCV"]


class LogisticRegressionPathCV(LinearClassifierMixin, BaseEstimator):
    """L2 logistic regression with C chosen by cross-validation, each path started at the priors.

    For each fold, one L-BFGS path over ``Cs`` in the order given, each C
    warm-started from the last and the first from zero weights with the
    intercepts at the fold's log class frequencies; C is the first of the best
    mean fold scores, and the model is refitted on every row with it, started
    from the folds' mean coefficients there (as ``LogisticRegressionCV`` does).
    A class absent from a fold's training rows gets probability 0 on that
    fold's held-out rows.

    Parameters
    ----------
    Cs : int or list of float, default=10
        Inverse penalty strengths, fitted in this order along each path; an
        int ``n`` is ``n`` values from 1e-4 to 1e4 on a log scale (as in
        ``LogisticRegressionCV``).
    cv : int or cross-validation generator, default=3
        The folds (``check_cv``: stratified for an int).
    scoring : "neg_log_loss" or callable, default="neg_log_loss"
        A fold's score at one C, larger is better; a callable gets
        ``(estimator, X_test, y_test)``, the estimator fitted on the fold's
        training rows.
    max_iter : int, default=1000
        L-BFGS iterations per C.
    tol : float, default=1e-4
        L-BFGS tolerance.
    n_jobs : int or None, default=None
        Processes the folds run in; each fold fits with one BLAS thread, so
        every value gives the same bits.

    Attributes
    ----------
    C_ : float
        The chosen C.
    Cs_ : ndarray of shape (n_Cs,)
        ``Cs``.
    scores_ : ndarray of shape (n_folds, n_Cs)
        Each fold's score at each C.
    n_iter_ : ndarray of shape (n_folds, n_Cs)
        L-BFGS iterations per fold and C.
    refit_n_iter_ : int
        L-BFGS iterations of the refit on every row.
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        The refitted weights (one row for two classes).
    intercept_ : ndarray of shape (1,) or (n_classes,)
        The refitted intercepts.
    classes_ : ndarray of shape (n_classes,)
        The labels.
    n_features_in_ : int
        Features seen in ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.choice.logistic_path import LogisticRegressionPathCV
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(90) % 3
    >>> X = rng.normal(size=(90, 5)) + np.eye(3, 5)[y]
    >>> lr = LogisticRegressionPathCV(Cs=[0.01, 1.0, 100.0]).fit(X, y)
    >>> lr.C_ in (0.01, 1.0, 100.0), lr.scores_.shape, lr.predict_proba(X).shape
    (True, (3, 3), (90, 3))
    """

    def __init__(self, *, Cs=10, cv=3, scoring="neg_log_loss", max_iter=1000, tol=1e-4,
                 n_jobs=None):
        self.Cs = Cs
        self.cv = cv
        self.scoring = scoring
        self.max_iter = max_iter
        self.tol = tol
        self.n_jobs = n_jobs

    def fit(self, X, y, sample_weight=None):
        """Choose C by cross-validation, then refit on every row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        y : array-like of shape (n_samples,)
            Labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows, in every fit and in the log-loss.

        Returns
        -------
        self : LogisticRegressionPathCV
            Fitted.
        """
        X, y = validate_data(self, X, y, dtype=np.float64, order="C")
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError(f"Two classes or more are needed; got {self.classes_.size} class.")
        sample_weight = _check_sample_weight(sample_weight, X)
        Cs = (np.logspace(-4, 4, self.Cs) if isinstance(self.Cs, (int, np.integer))
              else np.asarray(self.Cs, dtype=np.float64))
        folds = list(check_cv(self.cv, y, classifier=True).split(X, y))
        paths = Parallel(n_jobs=self.n_jobs)(
            delayed(_fold_path)(X, codes, sample_weight, train, test, self.classes_.size, Cs,
                                self.max_iter, self.tol, self.scoring)
            for train, test in folds)
        self.Cs_ = Cs
        self.scores_ = np.array([p["scores"] for p in paths])
        best = int(np.argmax(self.scores_.mean(axis=0)))  # argmax keeps the first: smallest C
        self.C_ = float(Cs[best])
        present = np.array([p["present"] for p in paths])  # (folds, classes)
        weights = np.array([p["weights"][best] for p in paths])  # (folds, classes, d + 1)
        start = (weights * present[..., None]).sum(axis=0) / np.maximum(present.sum(0), 1)[:, None]
        with threadpool_limits(1, user_api="blas"):
            final, self.refit_n_iter_ = next(_path(X, codes, sample_weight, [self.C_], start,
                                                   self.max_iter, self.tol))
        self.coef_, self.intercept_ = final.coef_, final.intercept_
        self.n_iter_ = np.array([p["n_iter"] for p in paths])
        return self

    def predict_proba(self, X):
        """Class probabilities, in the order of ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Softmax of the decision function (the logistic for two classes).
        """
        check_is_fitted(self)
        decision = self.decision_function(X)
        if decision.ndim == 1:
            p = expit(decision)
            return np.column_stack([1 - p, p])
        return softmax(decision, axis=1)

    def predict_log_proba(self, X):
        """The log of :meth:`predict_proba` of ``X``, an (n_samples, n_features) array.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities, in the order of ``classes_``.
        """
        return np.log(self.predict_proba(X))


def _fold_path(X, codes, sample_weight, train, test, n_classes, Cs, max_iter, tol, scoring):
    """One fold's path over ``Cs``: scores, iterations and weights (full-class rows) per C."""
    present = np.isin(np.arange(n_classes), codes[train])
    start = np.zeros((n_classes, X.shape[1] + 1))
    start[:, -1] = _log_frequencies(codes[train], sample_weight[train], n_classes)
    out = {"present": present, "scores": [], "n_iter": [], "weights": []}
    with threadpool_limits(1, user_api="blas"):
        for lr, n_iter in _path(X[train], codes[train], sample_weight[train], Cs, start,
                                max_iter, tol):
            weights = _full_weights(lr, present)
            out["scores"].append(_score(lr, weights, X[test], codes[test], sample_weight[test],
                                        n_classes, scoring))
            out["n_iter"].append(n_iter)
            out["weights"].append(weights)
    return out


def _path(X, codes, sample_weight, Cs, start, max_iter, tol):
    """Logistic regressions of ``codes`` on ``X`` along ``Cs``, each C started at the last's.

    ``start`` holds one row of weights and intercept per class (all classes), the first C's
    starting point; only the rows of the classes present are used, in the binary form when
    two are. Yields a fitted :class:`~sklearn.linear_model.LogisticRegression` and its
    iterations per C: scikit-learn's ``lbfgs`` objective, solved by :mod:`._lbfgs`.
    """
    present = np.unique(codes)
    binary = present.size == 2
    objective = LogisticObjective(X, np.searchsorted(present, codes), sample_weight,
                                  present.size, binary=binary)
    params = start[present]
    if binary:  # one row: the second class's logit against the first's
        params = params[1:] - params[:1]
    params = params.ravel()
    for C in Cs:
        objective.l2 = 1.0 / (C * sample_weight.sum())
        params, n_iter = minimize_lbfgs(objective, params, tol=tol, max_iter=max_iter)
        weights = params.reshape(objective.shape)
        lr = LogisticRegression(C=C, max_iter=max_iter, tol=tol)
        lr.classes_, lr.n_features_in_, lr.n_iter_ = present, X.shape[1], np.array([n_iter])
        lr.coef_, lr.intercept_ = weights[:, :-1].copy(), weights[:, -1].copy()
        yield lr, n_iter


def _full_weights(lr, present):
    """The fitted weights as one (coef, intercept) row per class; absent classes get NaN."""
    rows = np.column_stack([lr.coef_, lr.intercept_])
    if rows.shape[0] == 1:  # binary form: class 0's logit is 0
        rows = np.vstack([np.zeros_like(rows), rows])
    full = np.full((present.size, rows.shape[1]), np.nan)
    full[present] = rows
    return np.nan_to_num(full, nan=0.0)


def _score(lr, weights, X_test, y_test, w_test, n_classes, scoring):
    if callable(scoring):
        return float(scoring(lr, X_test, y_test))
    if scoring != "neg_log_loss":
        raise ValueError(f"scoring must be 'neg_log_loss' or a callable; got {scoring!r}.")
    proba = np.zeros((len(X_test), n_classes))
    present = lr.classes_
    proba[:, present] = lr.predict_proba(X_test)
    return -log_loss(y_test, proba, labels=np.arange(n_classes), sample_weight=w_test)


def _log_frequencies(codes, weights, n_classes):
    """Log class frequencies, centred (softmax's optimum with zero weights); absent classes 0."""
    counts = np.bincount(codes, weights=weights, minlength=n_classes)
    logs = np.log(counts, where=counts > 0, out=np.zeros(n_classes))
    logs[counts > 0] -= logs[counts > 0].mean()
    return logs
