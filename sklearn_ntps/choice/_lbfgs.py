"""The probe's solver: L2 logistic regression by L-BFGS in compact form.

The probe fits 77 x 577 = 44,429 parameters about 2,000 times per layer's cross-validation.
Through scikit-learn's ``lbfgs`` solver an iteration cost 4.5 ms there: 1.8 ms inside SciPy's
L-BFGS-B routine (bookkeeping for bounds this problem does not have) and 2.1 ms in the loss,
0.8 ms of it array handling around its two matrix products. Here the inverse-Hessian product
is the compact representation of Byrd, Nocedal and Schnabel (1994), which reads the stored
pairs twice per iteration (about 0.5 ms), and the loss is the two products and a softmax
(1.6 ms). The line search is L-BFGS-B's (MINPACK's DCSRCH through SciPy, with its constants)
and the stopping rules are scikit-learn's (the largest gradient component at most ``tol``, or
a relative decrease of at most 64 machine epsilons), so the iterates are L-BFGS-B's: on three
BANKING77 layers the same iterations and the same objective values, and a layer's probe in
about 0.72 of the time (docs/performance.md).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.linalg import solve_triangular
from scipy.optimize._linesearch import scalar_search_wolfe1
from sklearn.exceptions import ConvergenceWarning

__all__ = ["LogisticObjective", "minimize_lbfgs"]

_EPS = np.finfo(np.float64).eps


class LogisticObjective:
    """The mean (weighted) log-loss of a linear softmax on some rows, plus L2 on the weights.

    The parameters are one row per class of weights followed by the intercept, raveled; the
    intercepts are not penalised. With ``binary=True`` there is one row, the logit of the
    second class against the first (whose logit is 0), as scikit-learn fits two classes.
    ``l2`` is scikit-learn's ``1 / (C * sum of the weights)``.
    """

    def __init__(self, X, codes, sample_weight, n_classes, *, binary):
        self.X = np.column_stack([X, np.ones(len(X))])
        self.onehot = np.eye(n_classes)[codes]
        self.weights = sample_weight / sample_weight.sum()
        self.binary = binary
        self.shape = (1 if binary else n_classes, self.X.shape[1])
        self.l2 = 0.0

    def __call__(self, params):
        W = params.reshape(self.shape)
        logits = self.X @ W.T
        if self.binary:
            logits = np.column_stack([np.zeros(len(logits)), logits])
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        total = exp.sum(axis=1, keepdims=True)
        loss = self.weights @ (np.log(total[:, 0]) - (logits * self.onehot).sum(axis=1))
        residual = (exp / total - self.onehot) * self.weights[:, None]
        if self.binary:
            residual = residual[:, 1:]
        grad = residual.T @ self.X
        coef = W[:, :-1]
        loss += 0.5 * self.l2 * np.vdot(coef, coef)
        grad[:, :-1] += self.l2 * coef
        return loss, grad.ravel()


def minimize_lbfgs(fun, x0, *, tol=1e-4, max_iter=1000, memory=10):
    """Minimise ``fun`` (returning the value and the gradient) from ``x0`` by L-BFGS.

    Stops when the largest gradient component is at most ``tol``, when an iteration lowers the
    value by at most 64 machine epsilons relative to it, or after ``max_iter`` iterations
    (with a :class:`~sklearn.exceptions.ConvergenceWarning`, as scikit-learn's ``lbfgs``).

    Returns
    -------
    x : ndarray
        The last iterate.
    n_iter : int
        Iterations (accepted steps).
    """
    x = np.array(x0, dtype=np.float64)
    f, g = fun(x)
    pairs = _Pairs(memory, x.size)
    n_iter = 0
    while np.max(np.abs(g)) > tol:
        if n_iter == max_iter:
            warnings.warn(f"L-BFGS did not converge in {max_iter} iterations; increase "
                          "max_iter or scale the data.", ConvergenceWarning, stacklevel=3)
            break
        direction = pairs.descent_direction(g)
        step, f_new, g_new = _wolfe_step(fun, x, direction, f, g @ direction)
        if step is None:
            if pairs.count:  # as L-BFGS-B: forget the pairs and try once more
                pairs.count = 0
                continue
            warnings.warn("L-BFGS's line search failed; the fit stopped before its tolerance.",
                          ConvergenceWarning, stacklevel=3)
            break
        x = x + step * direction
        n_iter += 1
        f_old, f = f, f_new
        pairs.advance(step, direction, g, g_new)
        g = g_new
        if f_old - f <= 64 * _EPS * max(abs(f_old), abs(f), 1.0):
            break
    return x, n_iter


def _wolfe_step(fun, x, direction, f, slope):
    """A step along ``direction`` meeting the strong Wolfe conditions of L-BFGS-B's search."""
    evaluated = {}

    def at(step):
        if step not in evaluated:
            evaluated[step] = fun(x + step * direction)
        return evaluated[step]

    step, _, _ = scalar_search_wolfe1(lambda a: at(a)[0], lambda a: at(a)[1] @ direction,
                                      phi0=f, derphi0=slope, c1=1e-3, c2=0.9, amax=1e10,
                                      amin=0.0, xtol=0.1)
    if step is None:
        return None, f, None
    f_new, g_new = at(step)
    return step, f_new, g_new


class _Pairs:
    """The last ``memory`` steps s and gradient changes y, and the products L-BFGS reads.

    The pairs are rows of one (2 m, n) array, S's slots then Y's, reused in turn; ``count``
    slots are in use, the newest at ``next - 1``. Reading that array costs more than the
    arithmetic, so an iteration reads it twice: once to form the direction from the products
    with the gradient, once for the products with the next gradient. The m x m products
    ``sy[i, j] = s_i . y_j`` (read only where s_i is no newer than y_j) and ``yy = Y Y'``
    follow from those without another pass: ``s_i . y = s_i . g_new - s_i . g``.
    """

    def __init__(self, memory, size):
        self.rows = np.zeros((2 * memory, size))
        self.with_gradient = np.zeros(2 * memory)  # rows @ g, for the current g
        self.sy = np.zeros((memory, memory))
        self.yy = np.zeros((memory, memory))
        self.memory = memory
        self.count = 0
        self.next = 0

    def descent_direction(self, g):
        """-H g for the compact inverse Hessian with H0 = gamma I; -g / |g| with no pairs.

        A direction that does not descend (round-off spoilt the pairs) drops them, as
        L-BFGS-B does.
        """
        if self.count:
            direction = -self._inverse_hessian_times(g)
            if g @ direction < 0:
                return direction
            self.count = 0
        return -g / np.linalg.norm(g)  # L-BFGS-B's first step: 1 / |g| along -g

    def advance(self, step, direction, g, g_new):
        """Store the pair of the step just taken (if its curvature is positive)."""
        m, slot = self.memory, self.next
        s, y = step * direction, g_new - g
        sy, yy = s @ y, y @ y
        if sy <= _EPS * yy:  # would spoil positive definiteness: skip it
            self.with_gradient = self.rows @ g_new
            return
        old, before = self._in_use(), self.with_gradient
        self.rows[slot], self.rows[m + slot] = s, y
        self.with_gradient = self.rows @ g_new
        self.sy[old, slot] = self.with_gradient[old] - before[old]
        self.yy[old, slot] = self.yy[slot, old] = self.with_gradient[m + old] - before[m + old]
        self.sy[slot, slot], self.yy[slot, slot] = sy, yy
        self.next = (slot + 1) % m
        self.count = min(self.count + 1, m)

    def _in_use(self):
        first = (self.next - self.count) % self.memory
        return (first + np.arange(self.count)) % self.memory

    def _inverse_hessian_times(self, g):
        """H g: Byrd, Nocedal and Schnabel (1994), the representation of H in their eq. 3.1."""
        m, order = self.memory, self._in_use()
        sy = self.sy[np.ix_(order, order)]
        newest = order[-1]
        gamma = self.sy[newest, newest] / self.yy[newest, newest]
        upper = np.triu(sy)  # R: s_i . y_j for i no newer than j
        r_a = solve_triangular(upper, self.with_gradient[order])
        inner = (np.diag(sy) * r_a + gamma * (self.yy[np.ix_(order, order)] @ r_a)
                 - gamma * self.with_gradient[m + order])
        coef = np.zeros(2 * m)
        coef[order] = solve_triangular(upper, inner, trans="T")
        coef[m + order] = -gamma * r_a
        return gamma * g + coef @ self.rows
