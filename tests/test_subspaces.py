import numpy as np
import pytest
from scipy import linalg

from sklearn_ntps.subspaces import nested_basis, top_generalized_eigenvectors, whiten


def random_problem(d=9, p=5, seed=0, rank_b=None):
    rng = np.random.default_rng(seed)
    G = rng.normal(size=(d, p))
    F = rng.normal(size=(d, rank_b or d))
    return G, F @ F.T


def test_largest_eigenvalues_first_as_scipy_generalized_eigh():
    G, B = random_problem()
    vals, vecs = top_generalized_eigenvectors(G, B, 5)
    ref_vals, ref_vecs = linalg.eigh(G @ G.T, B)
    # scipy returns ascending order: the authors' code kept the smallest.
    np.testing.assert_allclose(vals, ref_vals[::-1][:5], rtol=1e-9)
    np.testing.assert_allclose(vecs.T @ B @ vecs, np.eye(5), atol=1e-9)
    np.testing.assert_allclose(np.abs(vecs.T @ B @ ref_vecs[:, ::-1][:, :5]), np.eye(5), atol=1e-7)


def test_singular_b_is_solved_on_its_range():
    G, B = random_problem(d=10, p=3, rank_b=6, seed=1)
    G = B @ G  # keep A's range inside B's, as for real moments
    vals, vecs = top_generalized_eigenvectors(G, B)
    assert vecs.shape == (10, 6)
    np.testing.assert_allclose(vecs.T @ B @ vecs, np.eye(6), atol=1e-8)
    A = G @ G.T
    np.testing.assert_allclose(A @ vecs, B @ vecs * vals, atol=1e-6 * vals.max())
    assert np.all(np.diff(vals) <= 1e-12)
    np.testing.assert_allclose(vals[3:], 0, atol=1e-8 * vals.max())


def test_whiten_drops_null_space():
    B = np.diag([4.0, 1.0, 0.0, 1e-20])
    wh = whiten(B)
    assert wh.rank == 2
    np.testing.assert_allclose(wh.eigenvalues, [4.0, 1.0])
    np.testing.assert_allclose(wh.whitener.T @ B @ wh.whitener, np.eye(2))
    assert whiten(np.zeros((3, 3))).rank == 0


def test_nested_basis_spans_every_prefix():
    rng = np.random.default_rng(0)
    V = rng.normal(size=(6, 4))
    V = np.column_stack([V[:, 0], 2 * V[:, 0], V[:, 1:], V[:, 1] - V[:, 2], rng.normal(size=(6, 3))])
    basis, dims = nested_basis(V, block=3)
    np.testing.assert_array_equal(dims, [1, 1, 2, 3, 4, 4, 5, 6, 6])
    np.testing.assert_allclose(basis.T @ basis, np.eye(6), atol=1e-12)
    for k in range(1, V.shape[1] + 1):
        Q = basis[:, : dims[k - 1]]
        np.testing.assert_allclose(Q @ (Q.T @ V[:, :k]), V[:, :k], atol=1e-10)
        assert np.linalg.matrix_rank(V[:, :k]) == dims[k - 1]


@pytest.mark.parametrize("block", [1, 2, 64])
def test_nested_basis_block_size_does_not_matter(block):
    V = np.random.default_rng(1).normal(size=(5, 8))
    basis, dims = nested_basis(V, block=block)
    ref, ref_dims = nested_basis(V, block=64)
    np.testing.assert_array_equal(dims, ref_dims)
    np.testing.assert_allclose(np.abs(basis.T @ ref), np.eye(5), atol=1e-10)
