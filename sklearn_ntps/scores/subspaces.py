"""Stage 3 of the data flow: moments -> subspaces.

Both sides of NTPS are generalized eigenproblems ``A v = lambda B v`` with
``A = G G^T`` positive semi-definite and ``B`` a (often singular) covariance.
They are solved on the range of ``B``: factor ``B`` (Cholesky when a floor or
shrinkage made it positive definite, else an eigendecomposition keeping
eigenvalues above ``rtol * max``), whiten, then take the left singular vectors of the
whitened ``G`` (the eigenvectors of the whitened ``A``, more accurately).
Largest eigenvalues come first; the authors' dense code took the smallest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg


@dataclass(frozen=True, eq=False)
class Whitening:
    """A factor ``B ~= root @ root.T`` on ``B``'s numerical range, and its whitener.

    ``root`` and ``whitener`` are (d, m) with ``whitener.T @ root = I``, so
    ``whitener.T @ B @ whitener = I``. Any square root serves NTPS: every
    quantity it feeds is unchanged when ``root -> root @ O`` for an orthogonal
    ``O`` (and ``whitener -> whitener @ O``). :func:`whiten` takes the Cholesky
    factor when ``B`` is comfortably positive definite, the eigenbasis
    otherwise; ``eigenvalues`` (m,) are known on the second path only.
    """

    root: np.ndarray
    whitener: np.ndarray
    eigenvalues: np.ndarray | None = None

    @property
    def rank(self) -> int:
        """``m``, the dimension of ``B``'s numerical range: the columns of ``root``."""
        return self.root.shape[1]


def regularize(B: np.ndarray, *, shrinkage: float = 0.0, floor: float = 0.0,
               scale=None) -> np.ndarray:
    """Shrink ``B`` towards a scaled identity, then add ``floor * scale`` to its diagonal.

    ``(1 - shrinkage) B + shrinkage * tr(B) / d * I`` is scikit-learn's
    ``shrunk_covariance``. The floor is a diagonal loading relative to each
    coordinate's raw second moment ``scale`` (default ``diag(B)``): rounding
    error in hidden states is relative to each coordinate's magnitude, so the
    loading sits above the noise in every coordinate whatever its size, where
    one isotropic ridge would drown the small coordinates to cover the
    "massive activation" ones. A centred ``B`` passes its uncentred diagonal,
    since the rounding error is relative to the uncentred values.

    Examples
    --------
    >>> import numpy as np
    >>> regularize(np.diag([4.0, 0.0]), shrinkage=0.5, floor=0.1)
    array([[3.4, 0. ],
           [0. , 1. ]])
    """
    out = np.array(B, dtype=np.float64)
    d = out.shape[0]
    raw = np.diag(B).copy() if scale is None else np.asarray(scale, dtype=np.float64)
    if shrinkage:
        out *= 1.0 - shrinkage
        out.flat[:: d + 1] += shrinkage * np.trace(B) / d
    if floor:
        out.flat[:: d + 1] += floor * raw
    return out


def whiten(B: np.ndarray, *, rtol: float | None = None, definite: bool = False) -> Whitening:
    """Factor the PSD matrix ``B`` on its range.

    Parameters
    ----------
    B : ndarray of shape (d, d)
        Symmetric positive semi-definite matrix.
    rtol : float, default=None
        Eigenvalues at most ``rtol * max(eigenvalues)`` are treated as zero.
        ``None`` uses ``d * eps``, the cut-off of :func:`scipy.linalg.pinvh`.
    definite : bool, default=False
        ``B`` was made positive definite by its caller (a numerical floor or
        shrinkage), so its whole space is kept: a Cholesky factor, a fraction
        of an eigendecomposition's cost, unless it proves numerically unsound.

    Examples
    --------
    >>> import numpy as np
    >>> wh = whiten(np.diag([4.0, 1.0, 0.0]))
    >>> wh.rank, wh.eigenvalues
    (2, array([4., 1.]))
    >>> whiten(np.diag([4.0, 1.0]), definite=True).eigenvalues is None  # Cholesky
    True
    """
    d = B.shape[0]
    if definite:
        wh = _cholesky_whitening(B)
        if wh is not None:
            return wh
    if rtol is None:
        rtol = d * np.finfo(np.float64).eps
    w, Q = linalg.eigh(B, driver="evd")
    top = w.max(initial=0.0)
    keep = w > rtol * top if top > 0 else np.zeros_like(w, dtype=bool)
    # eigh returns ascending order; the range is kept largest first.
    keep_idx = np.flatnonzero(keep)[::-1]
    w, Q = w[keep_idx], Q[:, keep_idx]
    return Whitening(root=Q * np.sqrt(w), whitener=Q / np.sqrt(w), eigenvalues=w)


# Largest condition number of a unit-diagonal matrix whose Cholesky factor is
# trusted: its relative error is about cond * eps, here at most 1e-8.
_CHOLESKY_MAX_COND = 1e-8 / float(np.finfo(np.float64).eps)


def _cholesky_whitening(B):
    """``B``'s Cholesky factor, computed after scaling ``B`` to a unit diagonal; None if unsound.

    Scaling makes the factor's accuracy depend on the scaled conditioning
    only, which a floor relative to each coordinate's diagonal bounds
    (about ``d / rtol``) whatever the spread of the coordinates' scales.
    """
    diag = np.diag(B)
    if diag.size == 0 or not (diag > 0).all():
        return None
    s = 1.0 / np.sqrt(diag)
    scaled = B * s[:, None] * s[None, :]
    Ls, info = linalg.lapack.dpotrf(scaled, lower=1, clean=1)
    if info != 0:
        return None
    rcond, info = linalg.lapack.dpocon(Ls, np.abs(scaled).sum(axis=0).max(), uplo="L")
    if info != 0 or not rcond * _CHOLESKY_MAX_COND > 1:
        return None
    Ls_inv, info = linalg.lapack.dtrtri(Ls, lower=1)
    if info != 0:
        return None
    return Whitening(root=Ls / s[:, None], whitener=Ls_inv.T * s[:, None])


def top_generalized_eigenvectors(G, B, n_components=None, *, rtol=None):
    """Leading generalized eigenvectors of ``(G G^T, B)``, solved on range(B).

    Parameters
    ----------
    G : ndarray of shape (d, p)
        Factor of the left-hand matrix ``A = G G^T``.
    B : ndarray of shape (d, d) or Whitening
        Symmetric PSD right-hand matrix, possibly singular, or its
        :func:`whiten` decomposition when the caller already has it.
    n_components : int, default=None
        How many to return (at most ``rank(B)``); None returns all of them.
    rtol : float, default=None
        Relative cut-off of ``B``'s range, see :func:`whiten`.

    Returns
    -------
    eigenvalues : ndarray of shape (k,)
        In decreasing order.
    vectors : ndarray of shape (d, k)
        Normalised so that ``vectors.T @ B @ vectors = I``.

    Examples
    --------
    >>> import numpy as np
    >>> G = np.array([[2.0], [0.0]]); B = np.eye(2)
    >>> vals, vecs = top_generalized_eigenvectors(G, B, 1)
    >>> vals, np.abs(vecs).ravel()
    (array([4.]), array([1., 0.]))
    """
    wh = B if isinstance(B, Whitening) else whiten(B, rtol=rtol)
    W = wh.whitener
    k = wh.rank if n_components is None else min(n_components, wh.rank)
    WG = W.T @ G
    if WG.shape[1] < WG.shape[0]:
        # Few columns (the classes): the left singular vectors of W^T G are
        # the eigenvectors of W^T A W, and a thin SVD is cheap and accurate.
        Z, s, _ = linalg.svd(WG, full_matrices=k > WG.shape[1])
        vals = np.zeros(wh.rank)
        vals[: s.shape[0]] = s**2
    else:
        # A square factor (C1): eigh of the whitened Gram is twice as fast as
        # the SVD, and squaring only blurs the trailing, least used directions.
        vals, Z = linalg.eigh(WG @ WG.T, driver="evd")
        vals, Z = np.clip(vals[::-1], 0.0, None), Z[:, ::-1]
    return vals[:k], _fix_signs(W @ Z[:, :k])


def nested_basis(V: np.ndarray, *, rtol: float = 1e-8, block: int = 64):
    """Orthonormal basis of the nested spans ``span(V[:, :k])``, k = 1, 2, ...

    Block Gram-Schmidt, projecting twice ("twice is enough"), that drops a
    column whose new part is below ``rtol`` times its norm. Unlike a plain QR,
    a dependent column leaves no arbitrary direction behind, so rank-deficient
    ``V`` (more columns than the space they live in, say) is handled exactly.

    Returns
    -------
    basis : ndarray of shape (d, r)
        Orthonormal columns; ``basis[:, :dims[k-1]]`` spans ``V[:, :k]``.
    dims : ndarray of int, shape (K,)
        Dimension of ``span(V[:, :k])`` for each k = 1 .. K.

    Examples
    --------
    >>> import numpy as np
    >>> basis, dims = nested_basis(np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]]))
    >>> dims
    array([1, 1, 2])
    """
    d, K = V.shape
    norms = np.linalg.norm(V, axis=0)
    if K <= d:
        # Full column rank, the common case: one Householder QR, whose first k
        # columns span the first k of V. Only a dependent column needs the loop.
        Q, R = np.linalg.qr(V)
        if _independent(R, norms, rtol):
            return Q, np.arange(1, K + 1)
    basis = np.empty((d, min(d, K)))
    dims = np.empty(K, dtype=np.intp)
    r = 0
    for lo in range(0, K, block):
        Vb = V[:, lo : lo + block].copy()
        for _ in range(2):
            Vb -= basis[:, :r] @ (basis[:, :r].T @ Vb)
        r_block = r
        for j in range(Vb.shape[1]):
            v = Vb[:, j]
            for _ in range(2):
                v = v - basis[:, r_block:r] @ (basis[:, r_block:r].T @ v)
            nv = np.linalg.norm(v)
            if r < d and nv > rtol * norms[lo + j]:
                basis[:, r] = v / nv
                r += 1
            dims[lo + j] = r
    return basis[:, :r], dims


def nested_coordinates(V: np.ndarray, M: np.ndarray, *, rtol: float = 1e-8):
    """``(basis.T @ M, dims)`` for ``basis, dims = nested_basis(V)``, without forming ``basis``.

    The curves need only the coordinates of a few columns ``M`` in the nested
    spans: Householder QR applies its reflectors to them instead of building
    the basis, half the cost of :func:`nested_basis` for a square ``V``.

    Examples
    --------
    >>> import numpy as np
    >>> V = np.array([[1.0, 1.0], [0.0, 1.0]]); M = np.array([[0.0], [2.0]])
    >>> coords, dims = nested_coordinates(V, M)
    >>> np.abs(coords).ravel(), dims
    (array([0., 2.]), array([1, 2]))
    """
    d, K = V.shape
    if 0 < K <= d and M.shape[1] > 0:
        MQ, R = linalg.qr_multiply(V, M.T, mode="right")
        if _independent(R, np.linalg.norm(V, axis=0), rtol):
            return MQ.T, np.arange(1, K + 1)
    basis, dims = nested_basis(V, rtol=rtol)
    return basis.T @ M, dims


def _independent(R, norms, rtol) -> bool:
    # A column whose new part is small against its norm depends on those before it.
    return bool(np.all(np.abs(np.diag(R)) > 10 * rtol * norms))


def _fix_signs(vectors: np.ndarray) -> np.ndarray:
    """Flip each column so its largest-magnitude entry is positive (reproducible output)."""
    idx = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[idx, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1.0
    return vectors * signs
