"""Stage 1 of the data flow: text -> hidden states (-> moments, streamed).

One forward pass per batch yields every layer; the batch's valid tokens are
packed and streamed into a :class:`~sklearn_ntps.moments.MomentAccumulator`,
so no token-level state outlives its batch. Results are cached on disk by
(model, settings, texts): a grid search over layers or poolings runs the
model once per distinct set of texts.
"""

from __future__ import annotations

import functools
import inspect
import os
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.externals.array_api_compat import array_namespace
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils._set_output import _wrap_data_with_container
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from . import cache
from ._warnings import warn_at_caller
from .models import cache_dir, load_model
from .moments import POOLINGS, MomentAccumulator, Moments, moments_from_statistics

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
    model_name_or_path : str, HFLoRAClassifier, default="SmolLM2-135M"
        A bundled short name ("SmolLM2-135M", "all-MiniLM-L6-v2"), a local
        model folder, a ``.gguf`` file, a hub id already in the local cache,
        or a fitted :class:`~sklearn_ntps.lora.HFLoRAClassifier`, whose
        merged weights are used (NTPS after LoRA; wrap it in
        ``sklearn.frozen.FrozenEstimator`` inside a grid search, whose clones
        would otherwise be unfitted).
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
    layers : list of int, default=None
        Keep the statistics of these hidden states only (None: all). The
        moments cost ``2 L d^2`` float64 numbers per set of texts, 160 MB for
        SmolLM2's 31 states but 4.4 GB for an 8B model's 33; a grid over
        ``layer`` within ``layers`` still costs one forward pass.
    cache : bool or str, default=True
        Cache extracted statistics on disk: True uses
        ``$SKLEARN_NTPS_CACHE/embeddings`` (default ``~/.cache/sklearn-ntps``),
        a string names a folder, False turns caching off.
    cache_max_bytes : int, float or str, default=None
        Size cap of the disk cache (``"10G"``, ``"500M"``, ``"none"``); the
        least recently used entries are evicted. None:
        ``$SKLEARN_NTPS_CACHE_MAX_BYTES``, else 20 GB. ``sklearn-ntps cache``
        shows and clears the cache.
    progress : bool, default=True
        Show progress bars on long work (they appear after two seconds).
    scheduler : str, default=None
        Address of a Dask scheduler (``"tcp://host:8786"``) to shard the forward
        passes over its workers (:func:`~sklearn_ntps.distributed.sharded_statistics`,
        ``pip install "sklearn-ntps[dask]"``); None runs them in this process.
        Each worker loads the model once; ``fit`` asks a worker for the model's
        shape and fingerprint, so this process loads no weights. The results
        are the same (pooled features bit for bit, moments to float64
        rounding), so the cache is shared with in-process runs.

    Attributes
    ----------
    n_layers_ : int
        Number of hidden-state outputs (blocks + 1).
    layer_ : int
        ``layer`` as a non-negative index, at fit (``transform`` reads ``layer`` again).
    layers_ : list of int
        The hidden states whose statistics are kept, as non-negative indices.
    dtype_ : str
        The dtype the model computes in; with the fingerprint it keys the cache.
    model_params_ : dict
        The parameters the model was loaded with; changing one needs a new fit.
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

    _parameter_constraints: dict = {
        "model_name_or_path": [str, os.PathLike, HasMethods(["loaded_model"]),
                               HasMethods(["get_params", "predict"])],
        "layer": [Integral],
        "layers": [None, "array-like"],
        "pooling": [StrOptions(set(POOLINGS))],
        "output": [StrOptions(set(OUTPUTS))],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_length": [Interval(Integral, 1, None, closed="left")],
        "device": [str, object],
        "torch_dtype": [str, object],
        "trust_remote_code": ["boolean"],
        "cache": ["boolean", str, os.PathLike, None],
        "cache_max_bytes": [None, Interval(Real, 0, None, closed="left"), str],
        "progress": ["boolean"],
        "scheduler": [None, str],
    }
    # Which weights and how they are loaded: changing one after fit needs a new fit.
    _MODEL_PARAMS = ("model_name_or_path", "device", "torch_dtype", "trust_remote_code")

    def __init__(
        self, *, model_name_or_path="SmolLM2-135M", layer=-1, layers=None, pooling="mean",
        output="pooled", batch_size=16, max_length=512, device="auto", torch_dtype="auto",
        trust_remote_code=False, cache=True, cache_max_bytes=None, progress=True,
        scheduler=None,
    ):
        self.model_name_or_path = model_name_or_path
        self.layer = layer
        self.layers = layers
        self.pooling = pooling
        self.output = output
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self.torch_dtype = torch_dtype
        self.trust_remote_code = trust_remote_code
        self.cache = cache
        self.cache_max_bytes = cache_max_bytes
        self.progress = progress
        self.scheduler = scheduler

    @_fit_context(prefer_skip_nested_validation=True)
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
        if X is not None:
            check_texts(X)
        cache.resolve_max_bytes(self.cache_max_bytes)  # a bad cap fails before any work
        info = self._describe()
        self.n_layers_ = info["n_layers"]
        self.layers_ = self._resolve_layers(info["n_layers"])
        self.layer_ = self._resolve_layer()
        self.n_features_out_ = info["hidden_size"]
        self.model_fingerprint_ = info["fingerprint"]
        self.dtype_ = info["dtype"]
        self.model_params_ = {name: getattr(self, name) for name in self._MODEL_PARAMS}
        return self

    def partial_fit(self, X=None, y=None):
        """Fit on the first call, then only check the texts: for streams of batches.

        The transformer learns nothing from texts, so a stream is
        ``emb.partial_fit(batch)``, then ``emb.transform(batch)``, whose
        :class:`~sklearn_ntps.Moments` add up (``sum`` or ``+``) to those of
        all the batches, for ``NTPSScorer.partial_fit`` or ``fit``.

        Parameters
        ----------
        X : sequence of str, default=None
        y : ignored

        Returns
        -------
        self : HFEmbeddingTransformer
        """
        if not hasattr(self, "model_params_"):
            return self.fit(X, y)
        if X is not None:
            check_texts(X)
        return self

    def transform(self, X):
        """Hidden-state features of the texts at ``layer``.

        ``layer``, ``pooling``, ``output`` and ``max_length`` are read here, so
        ``set_params`` on them needs no new fit; the model's own parameters do.

        Parameters
        ----------
        X : sequence of str

        Returns
        -------
        ndarray of shape (n_texts, n_features_out_) or Moments
        """
        stats = self._statistics(X)
        return self._layer_output(stats, self._resolve_layer())

    def transform_layers(self, X):
        """Features of the texts at every kept layer, from one extraction.

        Like calling :meth:`transform` with ``layer`` = each of ``layers_`` in
        turn, without holding all the layers' copies at once.

        Parameters
        ----------
        X : sequence of str

        Yields
        ------
        layer : int
        features : ndarray of shape (n_texts, n_features_out_) or Moments
        """
        stats = self._statistics(X)
        for layer in self.layers_:
            yield layer, self._layer_output(stats, layer)

    def _statistics(self, X):
        check_is_fitted(self)
        changed = [n for n in self._MODEL_PARAMS if getattr(self, n) != self.model_params_[n]]
        if changed:
            raise ValueError(f"{', '.join(changed)} changed since fit; call fit again.")
        texts = check_texts(X)
        stats = self._extract(texts, with_moments=self.output == "tokens")
        # Said on every call, cache hits included: the truncation is in the numbers.
        if stats.get("n_truncated"):
            warn_at_caller(f"{stats['n_truncated']} of {len(texts)} texts were truncated to "
                           f"max_length={stats['truncation_limit']} tokens.")
        return stats

    def _layer_output(self, stats, layer):
        # The statistics may hold all layers or only those asked for.
        kept = stats.get("layers")
        index = layer if kept is None else list(kept).index(layer)
        if self.output == "pooled":
            # np.array copies a memory-mapped cache slice into a plain array.
            return np.array(stats[f"pooled_{self.pooling}"][index])
        return moments_from_statistics(stats, index, self.pooling)

    def get_feature_names_out(self, input_features=None):
        """Names ``hidden0 .. hidden{d-1}`` of the pooled output."""
        check_is_fitted(self)
        return np.asarray([f"hidden{i}" for i in range(self.n_features_out_)], dtype=object)

    def _resolve_layers(self, n_layers):
        if self.layers is None:
            return list(range(n_layers))
        layers = np.asarray(self.layers)
        if layers.ndim != 1 or layers.size == 0 or not np.issubdtype(layers.dtype, np.integer) \
                or ((layers < -n_layers) | (layers >= n_layers)).any():
            raise ValueError(
                f"layers must be a non-empty list of hidden-state indices in [{-n_layers}, "
                f"{n_layers - 1}], got {self.layers!r}."
            )
        return sorted({int(i) % n_layers for i in layers})

    def _resolve_layer(self):
        layer = resolve_layer(self.layer, self.n_layers_, self.model_name_or_path)
        if layer not in self.layers_:
            raise ValueError(f"layer={self.layer} is not among layers={self.layers_}.")
        return layer

    def _describe(self):
        """The model's shape and identity, from a worker when there is a scheduler."""
        if self.scheduler is not None:
            from .distributed import describe_model

            return describe_model(self.model_name_or_path, scheduler=self.scheduler,
                                  **self._load_params())
        loaded = self._load()
        return {"n_layers": loaded.n_layers, "hidden_size": loaded.hidden_size,
                "fingerprint": loaded.resolved.fingerprint,
                "dtype": str(loaded.model.dtype).replace("torch.", "")}

    def _load_params(self):
        return {"device": self.device, "torch_dtype": self.torch_dtype,
                "trust_remote_code": self.trust_remote_code}

    def _load(self):
        source = self.model_name_or_path
        # A FrozenEstimator keeps a fitted fine-tune through clone (GridSearchCV).
        source = getattr(source, "estimator", source) if _is_frozen(source) else source
        if hasattr(source, "loaded_model"):  # a fitted HFLoRAClassifier: its merged weights
            return source.loaded_model()
        if not isinstance(source, (str, os.PathLike)):
            raise ValueError(f"model_name_or_path must be a name, a path or a fitted "
                             f"HFLoRAClassifier, got {type(source).__name__}.")
        return load_model(source, progress=self.progress, **self._load_params())

    def _extract(self, texts, *, with_moments):
        """The kept layers' statistics of ``texts``: from memory, disk, or the model.

        The key needs the fitted fingerprint and dtype only, so a cache hit
        loads no weights.
        """
        kept = None if self.layers is None else tuple(self.layers_)
        folder = self._cache_folder()
        found = None
        for layers in dict.fromkeys((kept, None)):  # an all-layer entry serves any subset
            name = cache.key(self.model_fingerprint_, (self.dtype_, self.max_length, layers),
                             texts)
            found = cache.lookup(folder, name)
            if found is not None and not (with_moments and found.get("c0") is None):
                return found
        name = cache.key(self.model_fingerprint_, (self.dtype_, self.max_length, kept), texts)
        # Before the model runs: a clear error with the figure, not a crash an hour in.
        cache.check_resources(len(self.layers_), self.n_features_out_, len(texts),
                              with_moments=with_moments, folder=folder)
        params = {"layers": kept, "batch_size": self.batch_size, "max_length": self.max_length,
                  "with_moments": with_moments, "progress": self.progress}
        if self.scheduler is None:
            stats = extract_statistics(self._load(), texts, **params)
        else:  # where the passes run is not in the key: the results are the same
            from .distributed import sharded_statistics

            stats = sharded_statistics(self.model_name_or_path, texts, scheduler=self.scheduler,
                                       **self._load_params(), **params)
        label = (f"{self.model_name_or_path}, {len(texts)} texts, "
                 f"{'moments' if with_moments else 'pooled'}")
        return cache.store(folder, name, stats, max_bytes=self.cache_max_bytes, label=label)

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


def _is_frozen(obj) -> bool:
    return type(obj).__name__ == "FrozenEstimator" and hasattr(obj, "estimator")


def _wrap_pooled_only(transform):
    """scikit-learn's set_output wraps every transform output in a table; Moments are
    no table, so only the pooled output is wrapped."""

    @functools.wraps(transform)
    def wrapped(self, X, *args, **kwargs):
        out = transform(self, X, *args, **kwargs)
        return out if isinstance(out, Moments) else _wrap_data_with_container(
            "transform", out, X, self)

    return wrapped


HFEmbeddingTransformer.transform = _wrap_pooled_only(HFEmbeddingTransformer.transform.__wrapped__)
HFEmbeddingTransformer.fit_transform = _wrap_pooled_only(
    lambda self, X, y=None, **fit_params: self.fit(X, y, **fit_params).transform(X))


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


def encode(loaded, texts, max_length):
    """Token ids of ``texts``, cut at ``max_length`` and at the model's positions.

    Returns ``(ids, limit, n_truncated)``: the ids of each text, the cut
    actually used, and how many texts it shortened.
    """
    tok, config = loaded.tokenizer, loaded.model.config
    limit = min(max_length, getattr(config, "max_position_embeddings", None) or max_length)
    ids = tok(texts, truncation=True, max_length=limit)["input_ids"]
    return ids, limit, _count_truncated(tok, texts, ids, limit)


def padded_batch(loaded, ids):
    """One batch of token ids, padded, as tensors on the model's device.

    Models number positions 0..T-1 whatever the mask; position ids counted
    from the attention mask instead make left padding give the states right
    padding does.
    """
    batch = loaded.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
    batch = {k: v.to(loaded.device) for k, v in batch.items()}
    if "position_ids" in inspect.signature(loaded.model.forward).parameters:
        batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    return batch


def resolve_layer(layer, n_layers: int, name) -> int:
    """``layer`` as a non-negative hidden-state index, or a ValueError saying the range."""
    if not -n_layers <= layer < n_layers:
        raise ValueError(
            f"layer={layer} is out of range: {name!r} has {n_layers} hidden states "
            f"(0 = embeddings .. {n_layers - 1}; negative values count from the end)."
        )
    return int(layer) % n_layers


def extract_statistics(loaded, texts, *, layers=None, batch_size=16, max_length=512,
                       with_moments=True, progress=True, sort_by_length=True, on_device=None):
    """Run the model once over ``texts`` and return the statistics of ``layers`` (None: all).

    Texts are tokenized once, sorted by length into batches (little padding),
    and restored to input order at the end. ``on_device`` (default: on a CUDA
    model) keeps the hidden states on the model's device and sums the moments
    there, in float64, so only the d x d results cross to the host; otherwise
    they are summed in numpy, whose ``c.T @ c`` is a symmetric rank-k update.

    Returns
    -------
    dict
        ``pooled_mean`` and ``pooled_last`` of shape (n_kept_layers, n_texts, d);
        with ``with_moments``, ``c0``, ``c1`` of shape (n_kept_layers, d, d),
        ``first`` and ``n_pairs``; ``layers`` (None for all), ``n_truncated``
        and the ``truncation_limit`` in tokens.
    """
    import torch

    model = loaded.model
    encoded, limit, n_truncated = encode(loaded, texts, max_length)
    kept = list(range(loaded.n_layers)) if layers is None else list(layers)
    lengths = np.array([len(ids) for ids in encoded])
    # Longest first: similar lengths share a batch (little padding), and the
    # largest batch comes first, so running out of memory shows at once.
    order = np.argsort(-lengths, kind="stable") if sort_by_length else np.arange(len(texts))
    # States arrive upcast to float32: their precision is the model's dtype's.
    acc = MomentAccumulator(pooling=POOLINGS, autoregressive=with_moments,
                            precision=float(torch.finfo(model.dtype).eps) / 2)
    if on_device is None:
        on_device = model.device.type == "cuda"
    host = (lambda t: t) if on_device else (lambda t: t.cpu().numpy())
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    pending = _Pending(acc, _STATS_BUFFER_BYTES)
    with torch.inference_mode():
        for idx in tqdm(batches, desc="Embedding", unit="batch", disable=not progress, delay=2):
            batch = padded_batch(loaded, [encoded[i] for i in idx])
            mask = batch["attention_mask"].bool()
            hidden = model(**batch, output_hidden_states=True).hidden_states
            # (n_layers, n_valid_tokens, d), text after text: pads dropped
            # whichever side they are on.
            pending.add(host(torch.stack([hidden[i] for i in kept])[:, mask].float()),
                        mask.sum(dim=1).cpu().numpy())
        pending.flush()
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    stats = acc.statistics()
    for p in POOLINGS:
        stats[f"pooled_{p}"] = stats[f"pooled_{p}"][:, inverse]
    stats.update(layers=None if layers is None else kept, truncation_limit=limit,
                 n_truncated=n_truncated)
    return stats


class _Pending:
    """Gathers batches' packed states until the moment products are worth a BLAS call.

    A short-text batch holds a few hundred tokens, on which float64 GEMMs run
    at half speed; the buffer is capped in bytes, not tokens, so a wide or deep
    model does not hold gigabytes. (Running the products in a worker thread
    while the model computes the next batches was measured slower on 2 cores,
    1.48x the bare forward pass against 1.26x, and was taken out.)
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
            states = self.states[0] if len(self.states) == 1 else \
                array_namespace(self.states[0]).concat(self.states, axis=1)
            self.acc.update(states, np.concatenate(self.lengths))
            self.states, self.lengths = [], []


def _count_truncated(tok, texts, encoded, limit):
    # Only a text that fills max_length can have been cut; re-tokenize those alone.
    full = [i for i, ids in enumerate(encoded) if len(ids) >= limit]
    if not full:
        return 0
    lengths = tok([texts[i] for i in full], truncation=False, verbose=False)["input_ids"]
    return sum(len(ids) > limit for ids in lengths)
