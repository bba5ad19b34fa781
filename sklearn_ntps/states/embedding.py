"""HFEmbeddingTransformer: a model's hidden-state features as a scikit-learn transformer.

The estimator holds the parameters and the scikit-learn contract (fit,
transform, set_output); running the model is
:func:`~sklearn_ntps.states.extraction.extract_statistics`'s, in this process or
sharded on Dask (:mod:`sklearn_ntps.states.distributed`). The results are kept in the
statistics store (:mod:`sklearn_ntps.states.cache`) by (model, settings, texts): a
grid search over layers or poolings runs the model once per distinct set of
texts.
"""

from __future__ import annotations

import os
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import check_is_fitted

from .._sklearn_compat import (
    HasMethods,
    Interval,
    StrOptions,
    _fit_context,
    _wrap_data_with_container,
)
from .._utils import cache_dir
from . import cache
from .extraction import check_texts, extract_statistics, resolve_layer, warn_truncated
from .models import load_model
from .resources import check_resources
from .statistics import POOLINGS, Statistics

OUTPUTS = ("pooled", "tokens")


class _OwnOutputContainer:
    """``transform`` and ``fit_transform``, out of scikit-learn's automatic output wrapping.

    ``TransformerMixin`` wraps the ``transform`` and ``fit_transform`` a class
    defines in its own body in a table, as ``set_output`` asks, and would try
    to make one of :class:`~sklearn_ntps.Moments`. Defined in this plain base,
    they are left alone: ``transform`` wraps the pooled features itself, and
    ``set_output`` is still offered (the class has ``transform`` and
    ``get_feature_names_out``).
    """

    def fit_transform(self, X, y=None, **fit_params):
        """Fit, then :meth:`transform` ``X``."""
        return self.fit(X, y, **fit_params).transform(X)

    def transform(self, X):
        """Hidden-state features of the texts at ``layer``.

        ``layer``, ``pooling``, ``output`` and ``max_length`` are read here, so
        ``set_params`` on them needs no new fit; the model's own parameters do.

        Parameters
        ----------
        X : sequence of str

        Returns
        -------
        ndarray of shape (n_texts, n_features_out_), a table under ``set_output``, or Moments
        """
        stats = self._statistics(X)
        out = self._layer_output(stats, self._resolve_layer())
        return out if self.output == "tokens" else _wrap_data_with_container(
            "transform", out, X, self)


class HFEmbeddingTransformer(_OwnOutputContainer, TransformerMixin, BaseEstimator):
    """Hidden-state features of any Hugging Face ``transformers`` model.

    ``transform`` maps texts to one layer's pooled hidden states, or to the
    NTPS statistics that :class:`~sklearn_ntps.NTPSScorer` and
    :class:`~sklearn_ntps.NTPSSubspaceProbe` take (``output="tokens"``).
    Every layer comes from the same forward pass and is kept in the
    statistics store (:mod:`sklearn_ntps.states.cache`), so
    ``GridSearchCV`` over ``layer`` or ``pooling`` does not rerun the model.

    Parameters
    ----------
    model_name_or_path : str, HFLoRAClassifier, default="SmolLM2-135M"
        A bundled short name ("SmolLM2-135M", "all-MiniLM-L6-v2"), a local
        model folder, a ``.gguf`` file, a hub id already in the local hub cache,
        or a fitted :class:`~sklearn_ntps.lora.classifier.HFLoRAClassifier`, whose
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
        ``"pooled"``: an ndarray (n_texts, hidden_size), or the table
        ``set_output`` asks for. ``"tokens"``: a :class:`~sklearn_ntps.Moments`
        (pooled features plus the streamed next-token moments), memory
        ``O(n d + d^2)``.
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
        Keep extracted statistics in the statistics store on disk: True uses
        ``$SKLEARN_NTPS_CACHE/embeddings`` (default ``~/.cache/sklearn-ntps``),
        a string names a folder, False turns caching off.
    cache_max_bytes : int, float or str, default=None
        Size cap of the statistics store (``"10G"``, ``"500M"``, ``"none"``);
        the least recently used entries are evicted. None:
        ``$SKLEARN_NTPS_CACHE_MAX_BYTES``, else 20 GB. ``sklearn-ntps cache``
        shows and clears it.
    progress : bool, default=True
        Show progress bars on long work (they appear after two seconds).
    scheduler : str, default=None
        Address of a Dask scheduler (``"tcp://host:8786"``) to shard the forward
        passes over its workers (:func:`~sklearn_ntps.states.distributed.sharded_statistics`,
        ``pip install 'sklearn-ntps[dask]'``); None runs them in this process.
        Each worker loads the model once; ``fit`` asks a worker for the model's
        shape and fingerprint, so this process loads no weights. The results
        are the same (pooled features bit for bit, moments to float64
        rounding), so the statistics store is shared with in-process runs.

    Attributes
    ----------
    n_layers_ : int
        Number of hidden-state outputs (blocks + 1).
    layer_ : int
        ``layer`` as a non-negative index, at fit (``transform`` reads ``layer`` again).
    layers_ : list of int
        The hidden states whose statistics are kept, as non-negative indices.
    dtype_ : str
        The dtype the model computes in; with the fingerprint it keys the statistics store.
    model_params_ : dict
        The parameters the model was loaded with; changing one needs a new fit.
    n_features_out_ : int
        The model's hidden size.
    model_fingerprint_ : str
        Identifies the weights in the statistics store's keys.

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
        warn_truncated(stats.n_truncated, len(texts), stats.truncation_limit)
        return stats

    def _layer_output(self, stats, layer):
        if self.output == "pooled":
            return stats.features(layer, self.pooling)
        return stats.layer(layer, self.pooling)

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
            from .distributed import describe_model  # optional: Dask

            return describe_model(self.model_name_or_path, scheduler=self.scheduler,
                                  **self._load_params())
        return self._load().describe()

    def _load_params(self):
        return {"device": self.device, "torch_dtype": self.torch_dtype,
                "trust_remote_code": self.trust_remote_code}

    def _load(self):
        source = self.model_name_or_path
        # A FrozenEstimator keeps a fitted fine-tune through clone (GridSearchCV).
        source = source.estimator if isinstance(source, FrozenEstimator) else source
        if hasattr(source, "loaded_model"):  # a fitted HFLoRAClassifier: its merged weights
            return source.loaded_model()
        if not isinstance(source, (str, os.PathLike)):
            raise ValueError(f"model_name_or_path must be a name, a path or a fitted "
                             f"HFLoRAClassifier, got {type(source).__name__}.")
        return load_model(source, progress=self.progress, **self._load_params())

    def _extract(self, texts, *, with_moments):
        """The kept layers' :class:`~sklearn_ntps.states.statistics.Statistics` of ``texts``.

        They come from memory, the statistics store on disk, or the model. The key needs the
        fitted fingerprint and dtype only, so a hit loads no weights.
        """
        kept = None if self.layers is None else tuple(self.layers_)
        folder = self._cache_folder()
        for layers in dict.fromkeys((kept, None)):  # an all-layer entry serves any subset
            name = cache.key(self.model_fingerprint_, (self.dtype_, self.max_length, layers),
                             texts)
            found = cache.lookup(folder, name)
            if found is not None:
                found = Statistics.from_arrays(found)
                if found.has_moments or not with_moments:
                    return found
        name = cache.key(self.model_fingerprint_, (self.dtype_, self.max_length, kept), texts)
        # Before the model runs: a clear error with the figure, not a crash an hour in.
        check_resources(len(self.layers_), self.n_features_out_, len(texts),
                        with_moments=with_moments, folder=folder)
        params = {"layers": kept, "batch_size": self.batch_size, "max_length": self.max_length,
                  "with_moments": with_moments, "progress": self.progress}
        if self.scheduler is None:
            stats = extract_statistics(self._load(), texts, **params)
        else:  # where the passes run is not in the key: the results are the same
            from .distributed import sharded_statistics  # optional: Dask

            stats = sharded_statistics(self.model_name_or_path, texts, scheduler=self.scheduler,
                                       **self._load_params(), **params)
        label = (f"{self.model_name_or_path}, {len(texts)} texts, "
                 f"{'moments' if with_moments else 'pooled'}")
        return Statistics.from_arrays(cache.store(folder, name, stats.to_arrays(),
                                                  max_bytes=self.cache_max_bytes, label=label))

    def _cache_folder(self):
        if self.cache is False or self.cache is None:
            return None
        return cache_dir() / cache.FOLDER if self.cache is True else Path(self.cache)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        tags.non_deterministic = False
        return tags
