"""Stage 2 of the data flow: hidden states -> moments.

NTPS needs, per layer, only sufficient statistics of the token hidden states:

* the pooled feature of every text (one row per text), for the perception side;
* the autoregressive moments ``C0 = sum c_t c_t^T`` and ``C1 = sum c_t h_{t+1}^T``
  over all texts, where ``c_t = h_1 + ... + h_t`` is the linear context.

They are sums, so they stream (memory ``O(n d + d^2)`` whatever the number of
tokens) and the moments of two shards add up to the moments of the whole.
Everything is accumulated in float64 whatever the dtype of the states.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

POOLINGS = ("mean", "last")

# Tokens per chunk when a list of per-text arrays is streamed: large enough for
# BLAS to run near peak, small enough that the float64 copy stays a few MB.
_CHUNK_TOKENS = 8192


@dataclass(frozen=True, eq=False)
class Moments:
    """NTPS sufficient statistics of one layer over a set of texts.

    This is what :class:`~sklearn_ntps.NTPSScorer` and
    :class:`~sklearn_ntps.NTPSSubspaceProbe` accept in place of per-text
    hidden states, and what ``HFEmbeddingTransformer(output="tokens")``
    returns. ``len(moments)`` is the number of texts.

    Parameters
    ----------
    pooled : ndarray of shape (n_texts, n_features)
        Pooled hidden state of each text (mean over its tokens by default).
    c0 : ndarray of shape (n_features, n_features)
        Sum over texts and positions ``t = 1 .. T_i - 1`` of ``c_t c_t^T``.
    c1 : ndarray of shape (n_features, n_features)
        Sum over texts and positions of ``c_t h_{t+1}^T``.
    n_pairs : int
        Number of (context, next token) pairs summed into ``c0`` and ``c1``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.moments import compute_moments
    >>> rng = np.random.default_rng(0)
    >>> states = [rng.normal(size=(t, 4)) for t in (3, 5, 1)]
    >>> m = compute_moments(states)
    >>> len(m), m.n_features, m.n_pairs
    (3, 4, 6)
    >>> whole = compute_moments(states[:2]) + compute_moments(states[2:])
    >>> bool(np.allclose(whole.c0, m.c0))
    True
    """

    pooled: np.ndarray
    c0: np.ndarray
    c1: np.ndarray
    n_pairs: int

    def __len__(self) -> int:
        return self.pooled.shape[0]

    @property
    def n_features(self) -> int:
        return self.pooled.shape[1]

    def autoregressive_covariances(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(C0, C1)`` normalised by the number of texts, as in the spec."""
        n = max(len(self), 1)
        return self.c0 / n, self.c1 / n

    def __add__(self, other: Moments) -> Moments:
        if not isinstance(other, Moments):
            return NotImplemented
        if other.n_features != self.n_features:
            raise ValueError(
                f"Cannot merge moments of {self.n_features} and {other.n_features} features."
            )
        return Moments(
            pooled=np.vstack([self.pooled, other.pooled]),
            c0=self.c0 + other.c0,
            c1=self.c1 + other.c1,
            n_pairs=self.n_pairs + other.n_pairs,
        )


class MomentAccumulator:
    """Streaming, mergeable accumulator of :class:`Moments` for several layers.

    Feed it batches of packed token states: the valid tokens of a batch of
    texts concatenated text after text, with the length of each text. All
    layers of a batch are processed in one call: the prefix sums of every
    text at once (a loop over positions, never over texts), then one matrix
    product per moment over all valid tokens.

    Parameters
    ----------
    pooling : {"mean", "last"} or tuple of them, default="mean"
        How a text's token states are reduced to its pooled feature; with a
        tuple, every listed pooling is kept (the first is the default).
    autoregressive : bool, default=True
        Accumulate ``C0`` and ``C1``; False keeps the pooled features only.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps import MomentAccumulator
    >>> acc = MomentAccumulator()
    >>> states = np.arange(24, dtype=np.float32).reshape(2, 6, 2)  # 2 layers, 6 tokens
    >>> acc.update(states, lengths=[4, 2])
    >>> acc.n_texts, acc.n_layers
    (2, 2)
    >>> acc.moments(layer=-1).pooled
    array([[15., 16.],
           [21., 22.]])
    """

    def __init__(self, *, pooling="mean", autoregressive: bool = True):
        self.poolings = (pooling,) if isinstance(pooling, str) else tuple(pooling)
        bad = [p for p in self.poolings if p not in POOLINGS]
        if bad or not self.poolings:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
        self.autoregressive = autoregressive
        self._pooled: dict[str, list[np.ndarray]] = {p: [] for p in self.poolings}
        self._c0: np.ndarray | None = None
        self._c1: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None  # (n_layers, n_features)
        self.n_pairs = 0

    @property
    def n_texts(self) -> int:
        return sum(p.shape[1] for p in self._pooled[self.poolings[0]])

    @property
    def n_layers(self) -> int:
        return 0 if self._shape is None else self._shape[0]

    def update(self, states, lengths) -> None:
        """Add a batch of texts.

        Parameters
        ----------
        states : array-like of shape (n_layers, n_tokens, n_features) or (n_tokens, n_features)
            Valid token states of the batch, packed: text after text, in order.
        lengths : array-like of int, shape (n_texts,)
            Number of tokens of each text; they sum to ``n_tokens``. Every
            length must be at least 1.
        """
        states = np.asarray(states)
        if states.ndim == 2:
            states = states[np.newaxis]
        lengths = np.asarray(lengths, dtype=np.intp)
        n_layers, n_tokens, d = states.shape
        if lengths.sum() != n_tokens or (lengths < 1).any():
            raise ValueError("lengths must be >= 1 and sum to the number of tokens.")
        self._check_shape((n_layers, d))
        if self.autoregressive and self._c0 is None:
            self._c0 = np.zeros((n_layers, d, d))
            self._c1 = np.zeros((n_layers, d, d))
        ends = np.cumsum(lengths)
        # Position p of every text at least p + 1 long: a loop over positions
        # (not texts) builds all prefix sums with vectorised row additions.
        steps = [ends[lengths > p] - lengths[lengths > p] + p for p in range(1, lengths.max())]
        pooled = {p: np.empty((n_layers, len(lengths), d)) for p in self.poolings}
        # Non-finite states are caught below, once, instead of warning per layer.
        with np.errstate(invalid="ignore", over="ignore"):
            self._accumulate(states, lengths, ends, steps, pooled)
        # A non-finite state spreads into every sum it touches: stop at once.
        finite = all(np.isfinite(v).all() for v in pooled.values())
        if not (finite and (self._c0 is None or np.isfinite(self._c0).all())):
            raise ValueError(
                "Hidden states contain NaN or infinity (a float16 overflow? try "
                "torch_dtype='float32'); nothing from this batch can be trusted."
            )
        for p in self.poolings:
            self._pooled[p].append(pooled[p])
        if self.autoregressive:
            self.n_pairs += n_tokens - len(lengths)

    def _accumulate(self, states, lengths, ends, steps, pooled):
        # One layer at a time keeps the float64 copies in cache: the passes over
        # the states cost little next to the two matrix products.
        for layer in range(states.shape[0]):
            h = states[layer].astype(np.float64)
            contexts = None
            if self.autoregressive:
                contexts = h.copy()
                for idx in steps:
                    contexts[idx] += contexts[idx - 1]
            for p in self.poolings:
                pooled[p][layer] = _pool(h, lengths, p, contexts)
            if self.autoregressive:
                # The last token of a text has no next token: zeroing its
                # context drops that pair, so both products run on views.
                contexts[ends - 1] = 0.0
                self._c0[layer] += contexts.T @ contexts
                self._c1[layer] += contexts[:-1].T @ h[1:]

    def _check_shape(self, shape):
        if self._shape is None:
            self._shape = shape
        elif self._shape != shape:
            raise ValueError(
                f"Batch has {shape[0]} layers of {shape[1]} features, "
                f"expected {self._shape[0]} of {self._shape[1]}."
            )

    def merge(self, other: MomentAccumulator) -> MomentAccumulator:
        """Add the texts of ``other`` (a shard) after those of ``self``; return self."""
        if other._shape is None:
            return self
        if other.poolings != self.poolings or other.autoregressive != self.autoregressive:
            raise ValueError("Cannot merge accumulators with different settings.")
        self._check_shape(other._shape)
        if other._c0 is not None:
            if self._c0 is None:
                self._c0, self._c1 = np.zeros_like(other._c0), np.zeros_like(other._c1)
            self._c0 += other._c0
            self._c1 += other._c1
        for p in self.poolings:
            self._pooled[p].extend(other._pooled[p])
        self.n_pairs += other.n_pairs
        return self

    def pooled(self, pooling: str | None = None) -> np.ndarray:
        """Pooled features of every layer, shape (n_layers, n_texts, n_features)."""
        if self._shape is None:
            raise ValueError("No texts were accumulated.")
        return np.concatenate(self._pooled[pooling or self.poolings[0]], axis=1)

    def moments(self, layer: int = 0, pooling: str | None = None) -> Moments:
        """The accumulated :class:`Moments` of one layer."""
        if not self.autoregressive:
            raise ValueError("This accumulator keeps pooled features only (autoregressive=False).")
        return Moments(pooled=self.pooled(pooling)[layer], c0=self._c0[layer].copy(),
                       c1=self._c1[layer].copy(), n_pairs=self.n_pairs)

    def statistics(self) -> dict:
        """Every layer's arrays, for storage: ``pooled_<pooling>``, ``c0``, ``c1``, ``n_pairs``."""
        out = {f"pooled_{p}": self.pooled(p) for p in self.poolings}
        if self.autoregressive:
            out.update(c0=self._c0, c1=self._c1, n_pairs=self.n_pairs)
        return out


def check_token_states(X) -> list[np.ndarray]:
    """Validate per-text hidden states and return them as 2-D float arrays.

    Raises a ``ValueError`` naming the problem and the offending text.
    """
    if isinstance(X, np.ndarray):
        if X.ndim == 3:
            X = list(X)
        else:
            raise ValueError(
                "X must be a sequence of 2-D arrays of token hidden states, one "
                "(n_tokens_i, n_features) array per text, or a 3-D array "
                f"(n_texts, n_tokens, n_features); got an array of shape {X.shape}. "
                "Pooled features alone do not carry the next-token statistics NTPS "
                "needs; pass token-level states (e.g. HFEmbeddingTransformer(output='tokens'))."
            )
    if isinstance(X, (str, bytes)) or not isinstance(X, Sequence):
        raise ValueError(
            "X must be a sequence of 2-D arrays of token hidden states (one per text) "
            f"or a Moments object; got {type(X).__name__}."
        )
    if len(X) == 0:
        raise ValueError("X is empty: NTPS needs at least one text.")
    out = []
    for i, x in enumerate(X):
        try:
            a = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Text {i} is not a numeric array: {exc}") from None
        if a.ndim != 2:
            raise ValueError(
                f"Text {i} has shape {a.shape}; each text must be a 2-D array "
                "(n_tokens, n_features)."
            )
        if a.shape[0] == 0:
            raise ValueError(f"Text {i} has 0 tokens; every text needs at least one.")
        if out and a.shape[1] != out[0].shape[1]:
            raise ValueError(
                f"Inconsistent n_features: text {i} has {a.shape[1]}, text 0 has "
                f"{out[0].shape[1]}."
            )
        if not np.isfinite(a).all():
            raise ValueError(f"Text {i} contains NaN or infinity.")
        out.append(a)
    if out[0].shape[1] == 0:
        raise ValueError("Hidden states have 0 features.")
    return out


def compute_moments(X, *, pooling: str = "mean") -> Moments:
    """Moments of per-text token hidden states (validated), streamed in chunks.

    Parameters
    ----------
    X : sequence of ndarray of shape (n_tokens_i, n_features), or Moments
        Token hidden states of each text, padding removed. A text with one
        token adds to the pooled features only. A :class:`Moments` object is
        checked and returned as is.
    pooling : {"mean", "last"}, default="mean"

    Returns
    -------
    Moments
    """
    if isinstance(X, Moments):
        if len(X) == 0:
            raise ValueError("X is empty: NTPS needs at least one text.")
        if not (np.isfinite(X.pooled).all() and np.isfinite(X.c0).all()
                and np.isfinite(X.c1).all()):
            raise ValueError("Moments contain NaN or infinity.")
        return X
    states = check_token_states(X)
    acc = MomentAccumulator(pooling=pooling)
    lengths = np.array([s.shape[0] for s in states])
    # Cut the list into chunks of about _CHUNK_TOKENS tokens (at least one text each).
    chunk_id = np.cumsum(lengths) // _CHUNK_TOKENS
    bounds = np.flatnonzero(np.diff(chunk_id)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(states)]):
        acc.update(np.concatenate(states[lo:hi]), lengths[lo:hi])
    return acc.moments()


def pooled_features(X, *, pooling: str = "mean") -> np.ndarray:
    """Pooled feature of each text, without the autoregressive moments.

    Parameters
    ----------
    X : sequence of ndarray of shape (n_tokens_i, n_features), or Moments
    pooling : {"mean", "last"}, default="mean"

    Returns
    -------
    ndarray of shape (n_texts, n_features), float64
    """
    if isinstance(X, Moments):
        return compute_moments(X).pooled
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
    states = check_token_states(X)
    return _pool(np.concatenate(states), np.array([s.shape[0] for s in states]), pooling)


def _pool(states, lengths, pooling, contexts=None):
    """The pooling rule, for packed states of shape (..., n_tokens, n_features).

    ``contexts``, the per-text prefix sums when already computed, give the
    mean for free: a text's last prefix sum is the sum of its tokens.
    """
    ends = np.cumsum(lengths)
    if pooling == "last":
        return states[..., ends - 1, :]
    sums = contexts[..., ends - 1, :] if contexts is not None else np.add.reduceat(
        states, ends - lengths, axis=-2)
    return sums / lengths[:, None]
