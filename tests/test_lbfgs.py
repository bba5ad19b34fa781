import warnings

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from sklearn_ntps.choice._lbfgs import LogisticObjective, _Pairs, minimize_lbfgs


def data(n=120, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return rng.normal(size=(n, d)) + 0.7 * rng.normal(size=(k, d))[y], y


@pytest.mark.parametrize("binary", [False, True])
def test_the_objective_is_the_weighted_mean_log_loss_plus_half_l2_and_its_gradient(binary):
    X, y = data(k=2 if binary else 3)
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(y))
    objective = LogisticObjective(X, y, w, 2 if binary else 3, binary=binary)
    objective.l2 = 0.3
    params = np.random.default_rng(2).normal(size=objective.shape).ravel()
    W = params.reshape(objective.shape)
    logits = X @ W[:, :-1].T + W[:, -1]
    if binary:
        logits = np.column_stack([np.zeros(len(y)), logits])
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -(w * log_p[np.arange(len(y)), y]).sum() / w.sum() + 0.15 * (W[:, :-1] ** 2).sum()
    value, grad = objective(params)
    assert value == pytest.approx(expected, rel=1e-12)
    step = 1e-6 * np.eye(params.size)
    numeric = [(objective(params + e)[0] - objective(params - e)[0]) / 2e-6 for e in step]
    np.testing.assert_allclose(grad, numeric, atol=1e-7)


@pytest.mark.parametrize("k", [2, 4])
def test_it_reaches_scikit_learns_optimum_with_sample_weights(k):
    X, y = data(k=k)
    w = np.linspace(0.2, 3.0, len(y))
    objective = LogisticObjective(X, y, w, k, binary=k == 2)
    C = 0.5
    objective.l2 = 1.0 / (C * w.sum())
    params, n_iter = minimize_lbfgs(objective, np.zeros(objective.shape).ravel(), tol=1e-10)
    theirs = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(X, y, sample_weight=w)
    W = params.reshape(objective.shape)
    np.testing.assert_allclose(W[:, :-1], theirs.coef_, atol=1e-7)
    np.testing.assert_allclose(W[:, -1], theirs.intercept_, atol=1e-7)
    assert 0 < n_iter < 200


def test_it_takes_l_bfgs_bs_steps():
    # Same line search, same constants, same memory: the iterates of SciPy's L-BFGS-B on an
    # unbounded problem, so a fit stops where scikit-learn's would, in as many iterations.
    X, y = data(n=200, d=20, k=5, seed=3)
    objective = LogisticObjective(X, y, np.ones(len(y)), 5, binary=False)
    objective.l2 = 1.0 / 200
    start = np.zeros(objective.shape).ravel()
    ours, n_iter = minimize_lbfgs(objective, start, tol=1e-6)
    theirs = minimize(objective, start, jac=True, method="L-BFGS-B",
                      options={"gtol": 1e-6, "ftol": 64 * np.finfo(float).eps, "maxls": 50})
    # Equal here; round-off on another processor's BLAS kernels may part the paths late.
    assert abs(n_iter - theirs.nit) <= 5
    assert objective(ours)[0] == pytest.approx(theirs.fun, abs=1e-10)


def test_the_compact_inverse_hessian_is_the_two_loop_recursion():
    rng = np.random.default_rng(0)
    size, memory = 30, 4
    A = rng.normal(size=(size, size))
    A = A @ A.T + size * np.eye(size)  # a quadratic's Hessian: every pair has s . y > 0
    pairs, steps, g = _Pairs(memory, size), [], rng.normal(size=size)
    for _ in range(7):  # more pairs than memory: slots are reused
        direction = pairs.descent_direction(g)
        s = 0.3 * direction
        steps.append((s, A @ s))
        pairs.advance(0.3, direction, g, g + A @ s)
        g = g + A @ s
    expected = g.copy()
    kept = steps[-memory:]
    alphas = []
    for s, y in reversed(kept):
        alphas.append((s @ expected) / (s @ y))
        expected -= alphas[-1] * y
    s, y = kept[-1]
    expected *= (s @ y) / (y @ y)
    for (s, y), alpha in zip(kept, reversed(alphas)):
        expected += (alpha - (y @ expected) / (s @ y)) * s
    np.testing.assert_allclose(-pairs.descent_direction(g), expected, rtol=1e-10)


def test_it_warns_when_it_stops_short():
    X, y = data()
    objective = LogisticObjective(X, y, np.ones(len(y)), 3, binary=False)
    objective.l2 = 1e-3
    with pytest.warns(ConvergenceWarning, match="did not converge in 3 iterations"):
        _, n_iter = minimize_lbfgs(objective, np.zeros(objective.shape).ravel(), max_iter=3)
    assert n_iter == 3

    def uphill(x):  # a gradient pointing the wrong way: no step can satisfy the search
        return float(x @ x), -2 * x

    with pytest.warns(ConvergenceWarning, match="line search failed"):
        x, n_iter = minimize_lbfgs(uphill, np.ones(3))
    assert n_iter == 0 and np.array_equal(x, np.ones(3))


def test_a_start_at_the_optimum_takes_no_step():
    X, y = data()
    objective = LogisticObjective(X, y, np.ones(len(y)), 3, binary=False)
    objective.l2 = 0.1
    optimum, _ = minimize_lbfgs(objective, np.zeros(objective.shape).ravel(), tol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again, n_iter = minimize_lbfgs(objective, optimum, tol=1e-6)
    assert n_iter == 0 and np.array_equal(again, optimum)
