"""Stage 2 of the data flow: hidden states -> moments, the statistics NTPS needs.

NTPS needs, per layer, only sufficient statistics of the token hidden states:

* the pooled feature of every text (one row per text), for the perception side;
* the autoregressive moments ``C0 = sum c_t c_t^T`` and ``C1 = sum c_t h_{t+1}^T``
  over all texts, where ``c_t = h_1 + ... + h_t`` is the linear context.

They are sums, so they stream (memory ``O(n d + d^2)`` whatever the number of
tokens) and the moments of two shards add up to the moments of the whole.
Everything is accumulated in float64 whatever the dtype of the states, on the
device the states live on: the accumulator speaks the array API, so a CUDA
tensor's moments are summed on the GPU and only the d x d results come back.

This module streams states into them (:class:`MomentAccumulator`,
:func:`compute_moments`) and holds the pooling rule (:func:`pool`); the typed
objects that hold them, :class:`Moments` (one layer) and :class:`Statistics`
(every kept layer), live in :mod:`sklearn_ntps.states.statistics` and are imported
from here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from .._sklearn_compat import array_namespace, device, is_array_api_obj, is_numpy_array
from ..checks import check_finite_range
from .statistics import FLOAT32_ROUNDOFF as _FLOAT32_ROUNDOFF
from .statistics import POOLINGS, Moments, Statistics

__all__ = ["MomentAccumulator", "TokenIndex", "check_token_states", "compute_moments", "pool",
           "pooled_features", "unit_roundoff"]

# Tokens per chunk when a list of per-text arrays is streamed: large enough for
# BLAS to run near peak, small enough that the float64 copy stays a few MB.
_CHUNK_TOKENS = 8192
# Hidden states must lie within float32's range (checks.check_finite_range): below
# its smallest normal number their float64 squares underflow.
_MIN_STATE = float(np.finfo(np.float32).tiny)


class MomentAccumulator:
    """Streaming accumulator of :class:`Statistics` for several layers.

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
    precision : float, default=None
        Unit roundoff of the dtype the states were computed in, when they
        arrive upcast (a bfloat16 model's states as float32); None reads it
        from the arrays. Never below float32's.

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

    def __init__(self, *, pooling="mean", autoregressive: bool = True, precision=None):
        self.poolings = (pooling,) if isinstance(pooling, str) else tuple(pooling)
        bad = [p for p in self.poolings if p not in POOLINGS]
        if bad or not self.poolings:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
        self.autoregressive = autoregressive
        self.precision = max(_FLOAT32_ROUNDOFF, precision or 0.0)
        self._pooled: dict[str, list[np.ndarray]] = {p: [] for p in self.poolings}
        self._c0: np.ndarray | None = None
        self._c1: np.ndarray | None = None
        # Per layer: the sums of c_t and of h_{t+1} over the pairs, (n_layers, 2, n_features).
        self._first_order: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None  # (n_layers, n_features)
        self.n_pairs = 0

    @property
    def n_texts(self) -> int:
        """How many texts have been added."""
        return sum(p.shape[1] for p in self._pooled[self.poolings[0]])

    @property
    def n_layers(self) -> int:
        """How many layers the states have; 0 before the first batch."""
        return 0 if self._shape is None else self._shape[0]

    def update(self, states, lengths) -> None:
        """Add a batch of texts.

        Parameters
        ----------
        states : array of shape (n_layers, n_tokens, n_features) or (n_tokens, n_features)
            Valid token states of the batch, packed: text after text, in order.
            A numpy array, or any array-API array (a torch tensor on a GPU,
            say): the sums are then kept on its device, in float64.
        lengths : array-like of int, shape (n_texts,)
            Number of tokens of each text; they sum to ``n_tokens``. Every
            length must be at least 1.
        """
        if is_numpy_array(states) or not is_array_api_obj(states):
            states, xp = np.asarray(states), np
        else:
            xp = array_namespace(states)
        self.precision = max(self.precision, unit_roundoff(states.dtype, xp))
        if states.ndim == 2:
            states = states[None]
        lengths = np.asarray(lengths, dtype=np.intp)
        n_layers, n_tokens, d = states.shape
        if lengths.sum() != n_tokens or (lengths < 1).any():
            raise ValueError("lengths must be >= 1 and sum to the number of tokens.")
        self._check_shape((n_layers, d))
        dev = device(states)
        if self.autoregressive and self._c0 is None:
            self._c0 = xp.zeros((n_layers, d, d), dtype=xp.float64, device=dev)
            self._c1 = xp.zeros((n_layers, d, d), dtype=xp.float64, device=dev)
            self._first_order = xp.zeros((n_layers, 2, d), dtype=xp.float64, device=dev)
        index = TokenIndex(lengths, xp, dev)
        pooled = {p: xp.empty((n_layers, len(lengths), d), dtype=xp.float64, device=dev)
                  for p in self.poolings}
        # Non-finite states are caught below, once, instead of warning per layer.
        with np.errstate(invalid="ignore", over="ignore"):
            self._accumulate(xp, states, index, pooled)
        # A non-finite state spreads into every sum it touches: stop at once.
        finite = all(bool(xp.all(xp.isfinite(v))) for v in pooled.values())
        if not (finite and (self._c0 is None or bool(xp.all(xp.isfinite(self._c0))))):
            raise ValueError(
                "Hidden states contain NaN or infinity (a float16 overflow? try "
                "torch_dtype='float32'); nothing from this batch can be trusted."
            )
        for p in self.poolings:
            self._pooled[p].append(pooled[p])
        if self.autoregressive:
            self.n_pairs += n_tokens - len(lengths)

    def _accumulate(self, xp, states, index, pooled):
        # One layer at a time keeps the float64 copies in cache: the passes over
        # the states cost little next to the two matrix products.
        for layer in range(states.shape[0]):
            h = xp.astype(states[layer], xp.float64)
            contexts = _prefix_sums(xp, h, index)
            for p in pooled:
                # A text's last prefix sum is the sum of its tokens: the mean for free.
                pooled[p][layer] = pool(h, index, p, sums=contexts[index.last])
            if self.autoregressive:
                # The last token of a text has no next token: zeroing its
                # context drops that pair, so both products run on views.
                contexts[index.last] = 0.0
                self._c0[layer] += contexts.T @ contexts
                self._c1[layer] += contexts[:-1].T @ h[1:]
                self._first_order[layer, 0] += xp.sum(contexts, axis=0)
                self._first_order[layer, 1] += xp.sum(h, axis=0) - xp.sum(h[index.starts], axis=0)

    def _check_shape(self, shape):
        if self._shape is None:
            self._shape = shape
        elif self._shape != shape:
            raise ValueError(
                f"Batch has {shape[0]} layers of {shape[1]} features, "
                f"expected {self._shape[0]} of {self._shape[1]}."
            )

    def pooled(self, pooling: str | None = None, rows=None) -> np.ndarray:
        """Pooled features of every layer, shape (n_layers, n_texts, n_features).

        ``rows`` (a permutation) puts the ``i``-th text added at row ``rows[i]``:
        one copy, where gathering the batches and then reordering them took two
        (0.8 s each at 1,200 texts of SmolLM2's 31 layers).
        """
        if self._shape is None:
            raise ValueError("No texts were accumulated.")
        parts = [_to_numpy(p) for p in self._pooled[pooling or self.poolings[0]]]
        if rows is None:
            return np.concatenate(parts, axis=1)
        out = np.empty((parts[0].shape[0], len(rows), parts[0].shape[2]))
        start = 0
        for part in parts:
            out[:, rows[start:start + part.shape[1]]] = part
            start += part.shape[1]
        return out

    def moments(self, layer: int = 0, pooling: str | None = None) -> Moments:
        """The accumulated :class:`Moments` of one layer."""
        if not self.autoregressive:
            raise ValueError("This accumulator keeps pooled features only (autoregressive=False).")
        return self.statistics().layer(layer, pooling or self.poolings[0])

    def statistics(self, rows=None) -> Statistics:
        """Every layer's :class:`Statistics` so far, as numpy arrays on the host.

        ``rows``: as for :meth:`pooled`.
        """
        pooled = {p: self.pooled(p, rows) for p in self.poolings}
        if not self.autoregressive:
            return Statistics(pooled=pooled, precision=self.precision)
        first_order = _to_numpy(self._first_order)
        return Statistics(pooled=pooled, precision=self.precision, c0=_to_numpy(self._c0),
                          c1=_to_numpy(self._c1), context_sum=first_order[:, 0],
                          target_sum=first_order[:, 1], n_pairs=self.n_pairs)


class TokenIndex:
    """Where each text's tokens lie in a batch of packed states, on the states' device.

    Parameters
    ----------
    lengths : array-like of int, shape (n_texts,)
        Tokens of each text, packed text after text.
    xp : array namespace, default=numpy
    device : default=None
        The device of the states (index arrays live beside them).
    """

    def __init__(self, lengths, xp=np, device=None):
        self._put = (lambda a: a) if xp is np else (lambda a: xp.asarray(a, device=device))
        self._lengths = np.asarray(lengths, dtype=np.intp)
        self._ends = np.cumsum(self._lengths)
        self.last = self._put(self._ends - 1)
        self.starts = self._put(self._ends - self._lengths)
        self.lengths = self._put(self._lengths.astype(np.float64))

    @functools.cached_property
    def steps(self):
        """Per position ``p >= 1``: the tokens at ``p`` and the tokens just before them.

        Only the texts longer than ``p`` have a token at ``p``.
        """
        lengths, ends = self._lengths, self._ends
        at = [ends[lengths > p] - lengths[lengths > p] + p for p in range(1, lengths.max())]
        return [(self._put(idx), self._put(idx - 1)) for idx in at]


def _prefix_sums(xp, h, index):
    # Each token's context c_t = h_1 + ... + h_t within its text: a loop over
    # positions (not texts) builds all prefix sums with vectorised row additions.
    contexts = xp.asarray(h, copy=True)
    for idx, prev in index.steps:
        contexts[idx] += contexts[prev]
    return contexts


def pool(states, index: TokenIndex, pooling: str, *, sums=None):
    """The pooling rule, in one place.

    A text's feature is the mean of its token states, or the state of its last token.

    Parameters
    ----------
    states : array of shape (n_tokens, n_features)
        Token states packed text after text (padding dropped): a numpy array,
        or any array-API array (a torch tensor keeps its autograd graph).
    index : TokenIndex
        Where each text lies in ``states``.
    pooling : {"mean", "last"}
    sums : array of shape (n_texts, n_features), default=None
        Each text's sum of states, when the caller has it (the accumulator's
        prefix sums, a padded batch's masked sum); None sums them here, in
        token order.

    Returns
    -------
    array of shape (n_texts, n_features)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.states.moments import TokenIndex, pool
    >>> states = np.arange(10.0).reshape(5, 2)  # a text of 3 tokens, then one of 2
    >>> pool(states, TokenIndex([3, 2]), "mean")
    array([[2., 3.],
           [7., 8.]])
    >>> pool(states, TokenIndex([3, 2]), "last")
    array([[4., 5.],
           [8., 9.]])
    """
    if pooling == "last":
        return states[index.last]
    if pooling != "mean":
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
    if sums is None:
        xp = np if isinstance(states, np.ndarray) else array_namespace(states)
        sums = _prefix_sums(xp, states, index)[index.last]
    return sums / index.lengths[:, None]


def _to_numpy(a) -> np.ndarray:
    """A host numpy copy of an array-API array (a CUDA tensor, say); numpy arrays as they are."""
    if a is None or isinstance(a, np.ndarray):
        return a
    return np.asarray(a.cpu() if hasattr(a, "cpu") else a)


def unit_roundoff(dtype, xp=np) -> float:
    """Relative precision of hidden states stored as ``dtype``, never finer than float32's.

    ``xp`` is the array namespace ``dtype`` belongs to (torch's for a tensor's dtype).
    """
    if xp is np:
        dtype = np.dtype(dtype)
    own = float(xp.finfo(dtype).eps) / 2 if xp.isdtype(dtype, "real floating") else 0.0
    return max(own, _FLOAT32_ROUNDOFF)


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
    out, largest = [], 0.0
    for i, x in enumerate(X):
        if np.iscomplexobj(x):
            raise ValueError(f"Text {i} is complex; hidden states must be real.")
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
        largest = max(largest, check_finite_range(a, f"the hidden states of text {i}"))
        out.append(a)
    if out[0].shape[1] == 0:
        raise ValueError("Hidden states have 0 features.")
    if 0 < largest < _MIN_STATE:
        raise ValueError(
            f"Hidden states are at most {largest:.3g} in magnitude, below float32's smallest "
            f"normal number ({_MIN_STATE:.3g}): their float64 squares underflow. Rescale the "
            "states (NTPS does not depend on a global scale)."
        )
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
        for name in ("pooled", "c0", "c1"):
            if not np.isfinite(getattr(X, name)).all():
                raise ValueError(f"NaN or infinity in the moments ({name}).")
        return X
    return _accumulated(X, pooling, autoregressive=True).moments()


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
    return _accumulated(X, pooling, autoregressive=False).pooled()[0]


def _accumulated(X, pooling, *, autoregressive) -> MomentAccumulator:
    """Per-text states, validated, streamed into an accumulator in chunks.

    Each chunk has about ``_CHUNK_TOKENS`` tokens (and at least one text).
    """
    acc = MomentAccumulator(pooling=pooling, autoregressive=autoregressive,
                            precision=_input_precision(X))
    states = check_token_states(X)
    lengths = np.array([s.shape[0] for s in states])
    chunk_id = np.cumsum(lengths) // _CHUNK_TOKENS
    bounds = np.flatnonzero(np.diff(chunk_id)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(states)]):
        acc.update(np.concatenate(states[lo:hi]), lengths[lo:hi])
    return acc


def _input_precision(X) -> float:
    # Read before the float64 copy: a float16 array's precision is float16's.
    arrays = [X] if isinstance(X, np.ndarray) else X if isinstance(X, (list, tuple)) else []
    return max((unit_roundoff(x.dtype) for x in arrays if isinstance(x, np.ndarray)),
               default=_FLOAT32_ROUNDOFF)

