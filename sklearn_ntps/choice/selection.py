"""LayerSelector: which model, and which of its layers, for a labelled task.

``fit`` runs each model once over the texts (every layer from the same pass),
scores every layer with one score on the states put on the probe's footing
(:func:`~sklearn_ntps.choice.protocol.on_probe_footing`, the rule the recommended
score was validated under), picks a (model, layer) pair, and measures how
sure the pick is on disjoint blocks of the texts; ``transform`` hands the
chosen layer's pooled features on, so a classifier can follow it in a
Pipeline.
"""

from __future__ import annotations

import os
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._sklearn_compat import HasMethods, Interval, StrOptions, _fit_context
from ..checks import check_labelled
from ..scores.chance import N_PERMUTATIONS
from ..scores.registry import SCORE_NAME, default_scorers
from ..splits import stratified_blocks
from ..states.embedding import HFEmbeddingTransformer
from ..states.extraction import check_texts
from ..states.models import resolve_model
from ..states.statistics import POOLINGS
from .protocol import (
    AGGREGATIONS,
    MODEL_CHOICE,
    RECOMMENDED,
    distance_from_chance,
    interval,
    model_choice,
    noise_set,
)
from .racing import race

__all__ = ["DEFAULT_MODELS", "LayerSelector"]

# The bundled models: what `sklearn-ntps select` compares when no model is named.
DEFAULT_MODELS = ("SmolLM2-135M", "all-MiniLM-L6-v2", "all-mpnet-base-v2")


class LayerSelector(TransformerMixin, BaseEstimator):
    """Choose a model and a layer for a labelled task, then hand that layer's features on.

    ``fit`` runs each model once over the texts, takes every layer's
    statistics from that pass (pooled features, or token moments for a score
    that reads them, NTPS) and scores each layer with ``scorer`` (racing, by
    default, stops the pairs already behind after a first round of the
    texts, and runs a model only as deep as its deepest layer still in
    contention), on the states rescaled feature by
    feature to unit variance over the texts, as the report does (the rule of
    docs/validity.md under which the recommended score was validated). It
    then picks a model by ``aggregate`` and, in it, the layer with the
    highest score. ``transform`` returns the picked layer's pooled
    features, so ``make_pipeline(LayerSelector([...]), LogisticRegression())``
    trains a classifier on them, and ``cross_val_score`` or ``GridSearchCV``
    can judge the choice itself.

    How sure is the pick? The texts are dealt into ``n_blocks`` disjoint
    blocks with the class proportions of the whole (the model runs once over
    each; their statistics add up to the whole's), and every score is also
    computed on each block alone. A score, and the margin of the pick over
    the runner-up (the best other pair), get the value on all the texts +-
    Student's t with ``n_blocks - 1`` degrees of freedom times the standard
    error of the mean over blocks (:func:`interval`; centred on all the
    texts, as a score shifts with the number of texts it reads). The
    interval is over texts: it says whether the order of the top pairs would
    hold on other texts of this task, drawn alike; not whether the score
    picks well on other tasks, which is what docs/validity.md measures.

    Parameters
    ----------
    models : list, default=DEFAULT_MODELS
        Anything ``HFEmbeddingTransformer(model_name_or_path=...)`` takes: a
        bundled name, a model folder, a ``.gguf`` file, a hub id already in
        the local hub cache. The default is the three bundled models.
    scorer : str or estimator, default=None
        A key of :func:`~sklearn_ntps.scores.registry.default_scorers` ("logme",
        "ntps", "hscore", ...) or an estimator with the NTPSScorer API
        (``fit(moments, y).score_``, higher is better). None: with one model,
        the score rule B of docs/validity.md recommends for choosing a layer
        (:data:`~sklearn_ntps.choice.protocol.RECOMMENDED`, LogME); with two or more,
        the default of its rule M for choosing among models
        (:data:`~sklearn_ntps.choice.protocol.MODEL_CHOICE`, H-score: no score was
        separated there, and the rule takes the cheapest of the tied).
    layers : list of int, default=None
        Hidden-state indices to consider, in every model (negative ones count
        from the end); None: every layer.
    aggregate : {"best-layer", "layer-mean"}, default="best-layer"
        How a model is scored to pick it: by its best layer's score, or by the
        mean over its layers (transformer-ranker's two). The layer is then the
        best-scoring one of that model.
    pooling : {"mean", "last"}, default="mean"
    n_blocks : int, default=5
        Disjoint blocks of texts for the intervals; each must hold two
        classes.
    batch_size : int, default=16
    max_length : int, default=512
    device : str, default="auto"
    torch_dtype : str, default="auto"
        The dtype the models compute in: "auto" is float32 on the CPU. On a
        processor with bfloat16 matrix units (Intel AMX, say), "bfloat16" ran
        the forward pass 2.8x faster here (docs/performance.md), at the cost of
        hidden states rounded to 8 bits of mantissa; the statistics are still
        summed in float64.
    cache : bool or str, default=True
        As for :class:`~sklearn_ntps.HFEmbeddingTransformer`: keep the
        statistics in the statistics store, so a second fit on the same texts
        (a grid over ``aggregate``, say) runs no model.
    progress : bool, default=True
        Progress bars over the models, their layers and the forward passes.
    scheduler : str, default=None
        A Dask scheduler's address to shard the forward passes over
        (``pip install 'sklearn-ntps[dask]'``); None runs them here.
    n_permutations : int, default=30
        Shuffles of the labels each layer's score is refitted on, for its
        chance level (:mod:`sklearn_ntps.scores.chance`); 0 skips them, and then
        nothing says whether a score leaves chance.
    racing : bool, default=True
        Read the blocks in rounds (with five blocks, three and then the rest) and
        stop scoring the pairs separated below the leader after a round
        (:mod:`sklearn_ntps.choice.racing`): a model with no pair left runs no
        more, and one whose remaining layers are shallow runs only that far.
        False scores every pair on every block. Only with
        ``aggregate="best-layer"``: a model's mean over its layers needs them all.
    random_state : int, RandomState instance or None, default=0
        Seeds the blocks and the shuffles.

    Attributes
    ----------
    scores_ : dict
        ``{model: ndarray of shape (n_layers,)}``: the score of each layer in
        ``layers_[model]``, on all the texts. Models are keyed by name (a
        path as a string).
    block_scores_ : dict
        ``{model: ndarray of shape (n_blocks, n_layers)}``: the same on each block
        (NaN on the blocks a pair stopped before).
    layers_ : dict
        ``{model: list of int}``: the hidden-state indices scored.
    results_ : list of dict
        One record per (model, layer), best score first, like ``cv_results_``:
        ``model``, ``layer``, ``score``, ``rank``, ``se``, ``low``, ``high``
        (the 95% interval), ``block_mean`` (the mean over blocks), ``chance``
        and ``chance_std`` (the score's mean and standard deviation on
        shuffled labels), ``z`` (``(score - chance) / chance_std``),
        ``within_noise`` (not told apart from the pick on these texts, by
        :func:`noise_set`'s rule), ``picked``, ``n_texts`` (the texts the
        score read) and ``stopped_after`` (the round after which racing
        stopped the pair, None if it read every block). The pairs that read
        every block come first.
    best_model_ : str or object
        The picked entry of ``models``.
    best_layer_ : int
    best_score_ : float
    runner_up_ : tuple of (str, int) or None
        The best-scoring other pair; None when only one pair was scored.
    margin_ : float
        The pick's score minus the runner-up's, on all the texts. With
        ``aggregate="layer-mean"`` it is negative when another model's layer
        scores higher.
    margin_blocks_ : ndarray of shape (n_blocks,)
        The same difference on each block.
    margin_interval_ : dict
        ``estimate`` (``margin_``), ``se``, ``low``, ``high`` (95%), ``n``
        (blocks) and ``block_mean``. The score separates the top pairs when
        ``low > 0``; that is a margin in the score, not in accuracy.
    leaves_chance_ : bool or None
        Whether the pick's distance from chance exceeds ``chance_threshold_``
        (:func:`noise_set`); None without shuffles. When False, no pair is
        told apart from any other on these texts.
    chance_threshold_ : float
        The largest distance from chance, in standard deviations, that any
        pair reached on any shuffle of the labels.
    blocks_ : list of ndarray
        The text indices of each block.
    racing_ : dict
        ``pairs``, how many ``stopped``, the ``rounds`` after which some did,
        and the forward-pass work in blocks read by a pair:
        ``block_passes`` against ``block_passes_without_racing``.
    scorer_ : estimator
        The scorer used (unfitted).
    embedding_ : HFEmbeddingTransformer
        Gives the picked layer's pooled features; holds no weights, so the
        fitted selector pickles small and loads the model again on first use.

    See Also
    --------
    sklearn_ntps.evidence.report.run_report : every score beside a held-out probe, per layer.

    Examples
    --------
    The pick on precomputed statistics is :func:`score_layer` per layer; on
    texts (this runs two models):

    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_ntps.choice.selection import LayerSelector
    >>> from sklearn_ntps.datasets import load_sms_spam
    >>> X, y = load_sms_spam(split="train", n_samples=60, return_X_y=True)
    >>> selector = LayerSelector(["all-MiniLM-L6-v2", "all-mpnet-base-v2"],
    ...                          progress=False)  # doctest: +SKIP
    >>> selector.fit(X, y).best_model_, selector.best_layer_  # doctest: +SKIP
    ('all-MiniLM-L6-v2', 4)
    >>> pipe = make_pipeline(selector, LogisticRegression())  # doctest: +SKIP
    >>> pipe.fit(X, y).score(X, y) > 0.9  # doctest: +SKIP
    True
    """

    _parameter_constraints: dict = {
        "models": ["array-like"],
        "scorer": [None, SCORE_NAME, HasMethods(["fit"])],
        "layers": [None, "array-like"],
        "aggregate": [StrOptions(set(AGGREGATIONS))],
        "pooling": [StrOptions(set(POOLINGS))],
        "n_blocks": [Interval(Integral, 2, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_length": [Interval(Integral, 1, None, closed="left")],
        "device": [str, object],
        "torch_dtype": [str, object],
        "cache": ["boolean", str, os.PathLike, None],
        "progress": ["boolean"],
        "scheduler": [None, str],
        "n_permutations": [Interval(Integral, 0, None, closed="left")],
        "racing": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(self, models=DEFAULT_MODELS, *, scorer=None, layers=None,
                 aggregate="best-layer", pooling="mean", n_blocks=5, batch_size=16,
                 max_length=512, device="auto", torch_dtype="auto", cache=True, progress=True,
                 scheduler=None, n_permutations=N_PERMUTATIONS, racing=True, random_state=0):
        self.models = models
        self.scorer = scorer
        self.layers = layers
        self.aggregate = aggregate
        self.pooling = pooling
        self.n_blocks = n_blocks
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self.torch_dtype = torch_dtype
        self.cache = cache
        self.progress = progress
        self.scheduler = scheduler
        self.n_permutations = n_permutations
        self.racing = racing
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Score every layer of every model on the texts, and pick a (model, layer).

        Parameters
        ----------
        X : sequence of str
        y : array-like of shape (n_texts,)
            Class labels, at least two classes.

        Returns
        -------
        self : LayerSelector
        """
        self._fit(X, y)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None, **fit_params):
        """Fit, and return the picked layer's pooled features of ``X``.

        The features come from fit's own forward pass (the picked model's, over
        the blocks), not from a second one; they equal ``transform(X)`` up to
        float rounding (the texts are batched differently).

        Returns
        -------
        ndarray of shape (n_texts, hidden_size)
        """
        return self._fit(X, y)

    def transform(self, X):
        """The picked (model, layer)'s pooled hidden states of the texts.

        Parameters
        ----------
        X : sequence of str

        Returns
        -------
        ndarray of shape (n_texts, hidden_size), or a table under ``set_output``
        """
        check_is_fitted(self)
        return self.embedding_.transform(X)

    def get_feature_names_out(self, input_features=None):
        """Names ``hidden0 .. hidden{d-1}`` of the picked layer's features."""
        check_is_fitted(self)
        return self.embedding_.get_feature_names_out()

    # ------------------------------------------------------------------ fit
    def _fit(self, X, y):
        # Every check that can fail runs before the first forward pass.
        texts = check_texts(X)
        codes = check_labelled(texts, y, estimator=self)[1]
        seed = self._seed()
        blocks = self._resolve_blocks(codes, seed)
        names = self._resolve_models()
        scorer = self._resolve_scorer(len(names), seed)
        # Every model is loaded (and its layers checked) before any of them runs.
        kept = [] if self.layers is None else np.ravel(self.layers).tolist()
        # Token moments only for a score that reads them (NTPS); the others read pooled
        # features, a d x d matrix per layer and block less.
        output = "pooled" if getattr(scorer, "_reads", "tokens") == "pooled" else "tokens"
        embeddings = {name: HFEmbeddingTransformer(
            output=output, model_name_or_path=model, layers=self.layers,
            layer=kept[0] if kept else -1,  # any kept layer: transform_layers reads them all
            **self._embedding_params()).fit() for name, model in names.items()}
        y_blocks = [codes[b] for b in blocks]
        # Racing drops pairs by their own layer's score; a model's mean over its layers
        # needs every layer, so layer-mean scores them all.
        racing = self.racing and self.aggregate == "best-layer"
        rows, parts = race(embeddings, texts, blocks, y_blocks, scorer, racing=racing,
                           progress=self.progress)
        pick = self._store(rows, names, blocks, scorer)
        picked = parts[pick["model"], pick["layer"]]
        out = np.empty((len(texts), picked[0].shape[1] if isinstance(picked[0], np.ndarray)
                        else picked[0].n_features))
        for b, part in zip(blocks, picked):
            out[b] = part if isinstance(part, np.ndarray) else part.pooled
        return out

    def _store(self, rows, names, blocks, scorer):
        """The fitted attributes, from one record per (model, layer); returns the pick's row.

        The pick, the runner-up and the noise set come from the pairs that read
        every block; a pair that stopped was separated below the leader then.
        """
        full = [r for r in rows if r["stopped_after"] is None]
        _, pick = model_choice(full, "score", self.aggregate)
        others = [r for r in full if r is not pick]
        runner = min(others, key=lambda r: _descending(r["score"])) if others else None
        # The pairs that ran to the end first, best score first; then those that stopped,
        # the later ones first.
        order = sorted(range(len(rows)), key=lambda i: (
            -(rows[i]["stopped_after"] or len(blocks) + 1), _descending(rows[i]["score"])))
        self.layers_ = {n: [r["layer"] for r in rows if r["model"] == n] for n in names}
        self.scores_ = {n: np.array([r["score"] for r in rows if r["model"] == n])
                        for n in names}
        self.block_scores_ = {n: np.column_stack([r["block_scores"] for r in rows
                                                  if r["model"] == n]) for n in names}
        width = min(r["chance_scores"].size for r in full)
        noise = noise_set([r["score"] for r in full], [r["block_scores"] for r in full],
                          [r["chance_scores"][:width] for r in full],
                          next(i for i, r in enumerate(full) if r is pick))
        self.leaves_chance_, self.chance_threshold_ = noise["leaves_chance"], noise["threshold"]
        at = {id(r): i for i, r in enumerate(full)}
        self.results_ = []
        for rank, i in enumerate(order, start=1):
            r = rows[i]
            seen = r["block_scores"][: r["n_blocks"]]
            cell = interval(r["score"], seen)
            chance = r["chance_scores"]
            mean = float(chance.mean()) if chance.size >= 2 else float("nan")
            sd = float(chance.std(ddof=1)) if chance.size >= 2 else float("nan")
            k = at.get(id(r))
            self.results_.append({"model": r["model"], "layer": r["layer"],
                                  "score": r["score"], "rank": rank,
                                  **{k_: cell[k_] for k_ in ("se", "low", "high", "block_mean")},
                                  "chance": mean if k is None else float(noise["chance"][k]),
                                  "chance_std": sd if k is None else
                                  float(noise["chance_std"][k]),
                                  "z": float(distance_from_chance(r["score"], mean, sd))
                                  if k is None else float(noise["z"][k]),
                                  # A pick that does not leave chance is told apart from
                                  # nothing, a stopped pair included (noise_set's rule).
                                  "within_noise": bool(noise["within"][k]) if k is not None
                                  else noise["leaves_chance"] is False,
                                  "picked": r is pick, "n_texts": r["n_texts"],
                                  "stopped_after": r["stopped_after"]})
        self.racing_ = {"rounds": sorted({r["stopped_after"] for r in rows
                                          if r["stopped_after"] is not None}),
                        "stopped": sum(r["stopped_after"] is not None for r in rows),
                        "pairs": len(rows),
                        "block_passes": int(sum(r["n_blocks"] for r in rows)),
                        "block_passes_without_racing": len(rows) * len(blocks)}
        self.best_model_ = names[pick["model"]]
        self.best_layer_ = int(pick["layer"])
        self.best_score_ = float(pick["score"])
        if runner is None:
            self.runner_up_, self.margin_ = None, float("nan")
            self.margin_blocks_ = np.full(len(blocks), np.nan)
        else:
            self.runner_up_ = (runner["model"], int(runner["layer"]))
            self.margin_ = float(pick["score"] - runner["score"])
            self.margin_blocks_ = pick["block_scores"] - runner["block_scores"]
        self.margin_interval_ = interval(self.margin_, self.margin_blocks_)
        self.blocks_ = blocks
        self.scorer_ = scorer
        self.embedding_ = HFEmbeddingTransformer(
            output="pooled", model_name_or_path=self.best_model_, layer=self.best_layer_,
            layers=[self.best_layer_], **self._embedding_params()).fit()
        return pick

    # ------------------------------------------------------------------ resolvers
    def _embedding_params(self):
        return {"pooling": self.pooling, "batch_size": self.batch_size,
                "max_length": self.max_length, "device": self.device,
                "torch_dtype": self.torch_dtype, "cache": self.cache,
                "progress": self.progress, "scheduler": self.scheduler}

    def _resolve_scorer(self, n_models, seed):
        if self.scorer is None or isinstance(self.scorer, str):
            default = RECOMMENDED if n_models == 1 else MODEL_CHOICE
            scorer = default_scorers()[self.scorer or default]
        else:
            scorer = clone(self.scorer)
        if "n_permutations" in scorer.get_params():
            scorer.set_params(n_permutations=self.n_permutations, random_state=seed)
        return scorer

    def _seed(self):
        """One seed for the blocks and the shuffles, from ``random_state``."""
        rs = self.random_state
        if rs is None or isinstance(rs, Integral):
            return rs
        return check_random_state(rs).randint(np.iinfo(np.int32).max)

    def _resolve_models(self) -> dict:
        """``{name: model}``, in the given order; a name that resolves to nothing fails here."""
        models = list(self.models)
        if not models:
            raise ValueError("models is empty: name at least one model.")
        names = {}
        for i, model in enumerate(models):
            if isinstance(model, (str, os.PathLike)):
                name = os.fspath(model)
                if self.scheduler is None:
                    resolve_model(model)  # an unknown name fails before any model runs
            else:  # a fitted fine-tune, say
                name = f"{type(model).__name__}[{i}]"
            if name in names:
                raise ValueError(f"models lists {name!r} twice.")
            names[name] = model
        return names

    def _resolve_blocks(self, codes, seed):
        blocks = stratified_blocks(codes, self.n_blocks, seed)
        thin = [i for i, b in enumerate(blocks) if np.unique(codes[b]).size < 2]
        if thin:
            raise ValueError(f"With n_blocks={self.n_blocks}, block(s) {thin} hold a single "
                             "class, where no score can compare classes: use fewer blocks or "
                             "more texts per class.")
        return blocks

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.target_tags.required = True
        tags.requires_fit = True
        tags.non_deterministic = False
        return tags


def _descending(score):
    """Sort key: the highest score first, NaN last."""
    return (0, -score) if np.isfinite(score) else (1, 0.0)
