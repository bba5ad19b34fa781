import numpy as np
import pytest
from scipy import linalg

from sklearn_ntps.scores.subspaces import nested_basis, top_generalized_eigenvectors, whiten


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
    V = np.column_stack([V[:, 0], 2 * V[:, 0], V[:, 1:], V[:, 1] - V[:, 2],
                         rng.normal(size=(6, 3))])
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


def test_whiten_takes_cholesky_when_told_b_is_definite_and_eigen_otherwise():
    _, B = random_problem(d=12, p=3, seed=3)
    B = B * np.r_[1e4, np.ones(11)][:, None] * np.r_[1e4, np.ones(11)]  # unequal scales
    chol = whiten(B, definite=True)
    assert chol.eigenvalues is None and chol.rank == 12
    np.testing.assert_allclose(chol.root @ chol.root.T, B, rtol=1e-10, atol=1e-10 * B.max())
    np.testing.assert_allclose(chol.whitener.T @ B @ chol.whitener, np.eye(12), atol=1e-8)
    np.testing.assert_allclose(chol.whitener.T @ chol.root, np.eye(12), atol=1e-10)
    assert whiten(B).eigenvalues is not None
    # A "definite" matrix that is not (or too close to singular) takes the eigen path.
    assert whiten(np.diag([1.0, 0.0, 0.5]), definite=True).rank == 2
    near = np.array([[1.0, 1 - 1e-12], [1 - 1e-12, 1.0]])
    assert whiten(near, definite=True).eigenvalues is not None


def test_both_factorisations_give_the_same_generalized_eigenvectors():
    G, B = random_problem(d=15, p=15, seed=4)
    vals, vecs = top_generalized_eigenvectors(G, whiten(B, definite=True))
    ref_vals, ref_vecs = top_generalized_eigenvectors(G, B)
    np.testing.assert_allclose(vals, ref_vals, rtol=1e-9)
    np.testing.assert_allclose(vecs, ref_vecs, atol=1e-7 * np.abs(ref_vecs).max())


@pytest.mark.parametrize("dependent", [False, True])
def test_nested_coordinates_equal_those_in_the_nested_basis(dependent):
    from sklearn_ntps.scores.subspaces import nested_coordinates

    rng = np.random.default_rng(5)
    V = rng.normal(size=(8, 6))
    if dependent:
        V[:, 3] = V[:, 0] - 2 * V[:, 1]
    M = rng.normal(size=(8, 3))
    coords, dims = nested_coordinates(V, M)
    basis, ref_dims = nested_basis(V)
    np.testing.assert_array_equal(dims, ref_dims)
    # Each coordinate is defined up to the sign of its basis vector.
    np.testing.assert_allclose(np.abs(coords), np.abs(basis.T @ M), atol=1e-12)
