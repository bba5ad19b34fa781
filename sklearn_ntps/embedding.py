"""Stage 1 of the data flow: text -> hidden states (-> moments, streamed).

One forward pass per batch yields every layer; the batch's valid tokens are
packed and streamed into a :class:`~sklearn_ntps.moments.MomentAccumulator`,
so no token-level state outlives its batch. Results are cached on disk by
(model, settings, texts): a grid search over layers or poolings runs the
model once per distinct set of texts.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from . import cache
from .models import cache_dir, load_model
from .moments import POOLINGS, MomentAccumulator, moments_from_statistics

OUTPUTS = ("pooled", "tokens")
_STATS_BUFFER_BYTES = 128 << 20  # float32 token states waiting for the moment products


class HFEmbeddingTransformer(TransformerMixin, BaseEstimator):
    """Hidden-state features of any Hugging Face ``transformers`` model.

    ``transform`` maps texts to one layer's pooled hidden states, or to the
    NTPS statistics that :class:`~sklearn_ntps.NTPSScorer` and
    :class:`~sklearn_ntps.NTPSSubspaceProbe` take (``output="tokens"``).
    Every layer comes from the same forward pass and is cached, so
    ``GridSearchCV`` over ``layer`` or ``pooling`` does not rerun the model.

    Parameters
    ----------
    model_name_or_path : str, default="SmolLM2-135M"
        A bundled short name ("SmolLM2-135M", "all-MiniLM-L6-v2"), a local
        model folder, a ``.gguf`` file, or a hub id already in the local cache.
    layer : int, default=-1
        Hidden-state index: 0 is the embedding output, 1 .. n_layers the
        blocks' outputs; negative values count from the end.
    pooling : {"mean", "last"}, default="mean"
        Mean over a text's tokens, or its last real token (whatever the
        tokenizer's padding side).
    output : {"pooled", "tokens"}, default="pooled"
        ``"pooled"``: an ndarray (n_texts, hidden_size). ``"tokens"``: a
        :class:`~sklearn_ntps.Moments` (pooled features plus the streamed
        next-token moments), memory ``O(n d + d^2)``.
    batch_size : int, default=16
    max_length : int, default=512
        Longer texts are truncated (a warning gives how many).
    device : str, default="auto"
        "auto" picks CUDA, then MPS, then the CPU.
    torch_dtype : str, default="auto"
        "auto" is float32 on the CPU and the checkpoint's dtype elsewhere.
    trust_remote_code : bool, default=False
        Run a model repository's own code; never without your say-so.
    cache : bool or str, default=True
        Cache extracted statistics on disk: True uses
        ``$SKLEARN_NTPS_CACHE/embeddings`` (default ``~/.cache/sklearn-ntps``),
        a string names a folder, False turns caching off.
    progress : bool, default=True
        Show progress bars on long work (they appear after two seconds).

    Attributes
    ----------
    n_layers_ : int
        Number of hidden-state outputs (blocks + 1).
    layer_ : int
        ``layer`` as a non-negative index.
    n_features_out_ : int
        The model's hidden size.
    model_fingerprint_ : str
        Identifies the weights in cache keys.

    Examples
    --------
    >>> from sklearn_ntps import HFEmbeddingTransformer
    >>> emb = HFEmbeddingTransformer(model_name_or_path="all-MiniLM-L6-v2", layer=3,
    ...                              cache=False, progress=False)
    >>> emb.fit_transform(["A short text.", "Another, longer one."]).shape
    (2, 384)
    >>> moments = emb.set_params(output="tokens").transform(["A short text.", "Another one."])
    >>> len(moments), moments.c0.shape
    (2, (384, 384))
    """

    def __init__(
        self, *, model_name_or_path="SmolLM2-135M", layer=-1, pooling="mean", output="pooled",
        batch_size=16, max_length=512, device="auto", torch_dtype="auto",
        trust_remote_code=False, cache=True, progress=True,
    ):
        self.model_name_or_path = model_name_or_path
        self.layer = layer
        self.pooling = pooling
        self.output = output
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self.torch_dtype = torch_dtype
        self.trust_remote_code = trust_remote_code
        self.cache = cache
        self.progress = progress

    def fit(self, X=None, y=None):
        """Check the parameters and texts, and load the model.

        Parameters
        ----------
        X : sequence of str, default=None
            Texts; only validated (the transformer learns nothing from them).
        y : ignored

        Returns
        -------
        self : HFEmbeddingTransformer
        """
        self._check_params()
        if X is not None:
            check_texts(X)
        loaded = self._load()
        self.n_layers_ = loaded.n_layers
        if not -loaded.n_layers <= self.layer < loaded.n_layers:
            raise ValueError(
                f"layer={self.layer} is out of range: {self.model_name_or_path!r} has "
                f"{loaded.n_layers} hidden states (0 = embeddings .. {loaded.n_layers - 1}; "
                f"negative values count from the end)."
            )
        self.layer_ = self.layer % loaded.n_layers
        self.n_features_out_ = loaded.hidden_size
        self.model_fingerprint_ = loaded.resolved.fingerprint
        return self

    def transform(self, X):
        """Hidden-state features of the texts at ``layer``.

        Parameters
        ----------
        X : sequence of str

        Returns
        -------
        ndarray of shape (n_texts, n_features_out_) or Moments
        """
        check_is_fitted(self)
        stats = self._extract(check_texts(X), with_moments=self.output == "tokens")
        return self._layer_output(stats, self.layer_)

    def transform_layers(self, X):
        """Features of the texts at every layer, from one extraction.

        Like calling :meth:`transform` with ``layer`` = 0, 1, ... in turn,
        without holding all the layers' copies at once.

        Parameters
        ----------
        X : sequence of str

        Yields
        ------
        layer : int
        features : ndarray of shape (n_texts, n_features_out_) or Moments
        """
        check_is_fitted(self)
        stats = self._extract(check_texts(X), with_moments=self.output == "tokens")
        for layer in range(self.n_layers_):
            yield layer, self._layer_output(stats, layer)

    def _layer_output(self, stats, layer):
        if self.output == "pooled":
            # np.array copies a memory-mapped cache slice into a plain array.
            return np.array(stats[f"pooled_{self.pooling}"][layer])
        return moments_from_statistics(stats, layer, self.pooling)

    def get_feature_names_out(self, input_features=None):
        """Names ``hidden0 .. hidden{d-1}`` of the pooled output."""
        check_is_fitted(self)
        return np.asarray([f"hidden{i}" for i in range(self.n_features_out_)], dtype=object)

    def _check_params(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}.")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}.")
        for name in ("layer", "batch_size", "max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be an int, got {value!r}.")
        if self.batch_size < 1 or self.max_length < 1:
            raise ValueError("batch_size and max_length must be at least 1.")

    def _load(self):
        return load_model(
            self.model_name_or_path, device=self.device, torch_dtype=self.torch_dtype,
            trust_remote_code=self.trust_remote_code, progress=self.progress,
        )

    def _extract(self, texts, *, with_moments):
        """All layers' statistics of ``texts``: from memory, disk, or the model."""
        loaded = self._load()
        name = cache.key(loaded.resolved.fingerprint,
                         (str(loaded.model.dtype), self.max_length), texts)
        folder = self._cache_folder()
        found = cache.lookup(folder, name)
        if found is None or (with_moments and found.get("c0") is None):
            found = cache.store(folder, name, extract_statistics(
                loaded, texts, batch_size=self.batch_size, max_length=self.max_length,
                with_moments=with_moments, progress=self.progress,
            ))
        return found

    def _cache_folder(self):
        if self.cache is False or self.cache is None:
            return None
        return cache_dir() / "embeddings" if self.cache is True else Path(self.cache)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        tags.non_deterministic = False
        return tags


def check_texts(X) -> list[str]:
    """Validate a sequence of non-empty strings; raise a ValueError naming the culprit."""
    if isinstance(X, (str, bytes)):
        raise ValueError("X must be a sequence of texts, not a single string: wrap it in a list.")
    try:
        texts = list(X)
    except TypeError:
        raise ValueError(f"X must be a sequence of str, got {type(X).__name__}.") from None
    if not texts:
        raise ValueError("X is empty: pass at least one text.")
    for i, text in enumerate(texts):
        if text is None:
            raise ValueError(f"Text {i} is None; drop it or replace it with a string.")
        if not isinstance(text, str):
            raise ValueError(
                f"Text {i} is a {type(text).__name__}, not a str; convert it with str() first."
            )
        if not text.strip():
            raise ValueError(f"Text {i} is empty or whitespace only; drop it before embedding.")
    return texts


def extract_statistics(loaded, texts, *, batch_size=16, max_length=512, with_moments=True,
                       progress=True, sort_by_length=True):
    """Run the model once over ``texts`` and return every layer's statistics.

    Texts are tokenized once, sorted by length into batches (little padding),
    and restored to input order at the end.

    Returns
    -------
    dict
        ``pooled_mean`` and ``pooled_last`` of shape (n_layers, n_texts, d);
        with ``with_moments``, ``c0``, ``c1`` of shape (n_layers, d, d) and
        ``n_pairs``; ``n_truncated``.
    """
    import torch

    tok, model = loaded.tokenizer, loaded.model
    limit = min(max_length, getattr(model.config, "max_position_embeddings", None) or max_length)
    encoded = tok(texts, truncation=True, max_length=limit)["input_ids"]
    n_truncated = _count_truncated(tok, texts, encoded, limit)
    if n_truncated:
        warnings.warn(
            f"{n_truncated} of {len(texts)} texts were truncated to max_length={limit} tokens.",
            UserWarning, stacklevel=4,  # the caller of transform
        )
    lengths = np.array([len(ids) for ids in encoded])
    # Longest first: similar lengths share a batch (little padding), and the
    # largest batch comes first, so running out of memory shows at once.
    order = np.argsort(-lengths, kind="stable") if sort_by_length else np.arange(len(texts))
    # States arrive upcast to float32: their precision is the model's dtype's.
    acc = MomentAccumulator(pooling=POOLINGS, autoregressive=with_moments,
                            precision=float(torch.finfo(model.dtype).eps) / 2)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    takes_positions = "position_ids" in inspect.signature(model.forward).parameters
    pending = _Pending(acc, _STATS_BUFFER_BYTES)
    with torch.inference_mode():
        for idx in tqdm(batches, desc="Embedding", unit="batch", disable=not progress, delay=2):
            batch = tok.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt")
            batch = {k: v.to(loaded.device) for k, v in batch.items()}
            mask = batch["attention_mask"].bool()
            if takes_positions:
                # Models number positions 0..T-1 whatever the mask; count real
                # tokens instead, so left padding gives the same states as right.
                batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            hidden = model(**batch, output_hidden_states=True).hidden_states
            # (n_layers, n_valid_tokens, d), text after text: pads dropped
            # whichever side they are on.
            pending.add(torch.stack(hidden)[:, mask].float().cpu().numpy(),
                        mask.sum(dim=1).cpu().numpy())
        pending.flush()
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    stats = acc.statistics()
    for p in POOLINGS:
        stats[f"pooled_{p}"] = stats[f"pooled_{p}"][:, inverse]
    stats["n_truncated"] = n_truncated
    return stats


class _Pending:
    """Gathers batches' packed states until the moment products are worth a BLAS call.

    A short-text batch holds a few hundred tokens, on which float64 GEMMs run
    at half speed; the buffer is capped in bytes, not tokens, so a wide or deep
    model does not hold gigabytes.
    """

    def __init__(self, acc, max_bytes):
        self.acc, self.max_bytes = acc, max_bytes
        self.states, self.lengths = [], []

    def add(self, states, lengths):
        self.states.append(states)
        self.lengths.append(lengths)
        if sum(s.nbytes for s in self.states) >= self.max_bytes:
            self.flush()

    def flush(self):
        if self.states:
            self.acc.update(np.concatenate(self.states, axis=1), np.concatenate(self.lengths))
            self.states, self.lengths = [], []


def _count_truncated(tok, texts, encoded, limit):
    # Only a text that fills max_length can have been cut; re-tokenize those alone.
    full = [i for i, ids in enumerate(encoded) if len(ids) >= limit]
    if not full:
        return 0
    lengths = tok([texts[i] for i in full], truncation=False, verbose=False)["input_ids"]
    return sum(len(ids) > limit for ids in lengths)
