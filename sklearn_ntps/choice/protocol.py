"""The protocol the report, the selector and the studies share, in one place.

How texts become evidence: disjoint stratified blocks
(:func:`~sklearn_ntps.splits.stratified_blocks`) and random partitions of them
into training and test blocks; each layer's block statistics from one forward
pass; the probe's footing that every score reads the states on; fitting the
scores with their chance levels; intervals over blocks and over tasks; which
pairs the pick cannot be told apart from; and the one rule for choosing a
model. The constants are what docs/validity.md's pre-registered rules decided;
tests check them against its stored results. The probe itself is
:mod:`sklearn_ntps.choice.probe`.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from contextlib import contextmanager
from math import comb

import numpy as np
from scipy.stats import t as student_t
from sklearn.base import clone
from tqdm.auto import tqdm

from ..scores.chance import ChanceLevelWarning
from ..states.statistics import resample_blocks

__all__ = [
    "AGGREGATIONS",
    "BASELINES",
    "LAYER_REGRET",
    "MODEL_CHOICE",
    "MODEL_CHOICE_TIED",
    "NOISE_FLOOR",
    "NOT_SEPARATED",
    "N_BOOT",
    "RECOMMENDED",
    "block_layers",
    "block_partitions",
    "block_score",
    "distance_from_chance",
    "feature_scale",
    "fit_scores",
    "footed_partition",
    "group_rows",
    "interval",
    "layer_ranges",
    "model_choice",
    "noise_set",
    "on_probe_footing",
    "pick_row",
    "score_layer",
    "study_pool",
    "task_interval",
    "whole_score",
]

# The score the report recommends, chosen by rule B of docs/validity.md (lowest mean layer
# regret over 30 tasks); the study did not separate it from NOT_SEPARATED, so the printout
# names them too. A test checks both against docs/validity/study.json.
RECOMMENDED = "logme"
NOT_SEPARATED = ("ntps", "knn", "ridge_loo")
# The score that chooses among two or more models by default: rule M of docs/validity.md
# section 4. It separated no score; its tied set is MODEL_CHOICE_TIED, of which the rule takes
# the cheapest. A test checks both against docs/validity/reread.json.
MODEL_CHOICE = "hscore"
MODEL_CHOICE_TIED = ("hscore", "logme", "ridge_loo", "knn", "ntps")
# What a picked layer cost in docs/validity.md's re-read (section 5), in accuracy points:
# each score's mean layer regret over the 30 tasks with its two-way 95% interval, and the
# probe's own noise floor, the regret of letting the probe pick its layer on other texts.
LAYER_REGRET = {"ntps": (1.2, -0.8, 3.2), "ntps_paper": (5.6, 0.1, 11.2),
                "ntps_paper_exact": (4.3, -0.2, 8.9), "logme": (0.8, -0.1, 1.8),
                "hscore": (3.4, -3.3, 10.2), "transrate": (4.8, -1.4, 11.0),
                "rankme": (6.3, -0.3, 12.9), "knn": (1.0, -0.2, 2.2),
                "ridge_loo": (0.9, -0.0, 1.9)}
NOISE_FLOOR = 0.8

# Fixed rules a score must beat at picking a layer: they need no data at all.
BASELINES = {
    "last layer": lambda n_layers: n_layers - 1,
    "layer at 2/3 depth": lambda n_layers: round(2 * (n_layers - 1) / 3),
}
AGGREGATIONS = ("best-layer", "layer-mean")
N_BOOT = 2000


# ------------------------------------------------------------ blocks of texts
def block_partitions(n_blocks, n_test_blocks, n_replicates, random_state=0) -> list:
    """Distinct random partitions of ``n_blocks`` blocks into training and test blocks.

    Returns
    -------
    list of (train_blocks, test_blocks)
        Sorted block indices; each partition's two sides are disjoint and
        together hold every block once. No two partitions have the same test blocks.

    Examples
    --------
    >>> from sklearn_ntps.choice.protocol import block_partitions
    >>> [(tr.tolist(), te.tolist()) for tr, te in block_partitions(4, 1, 2)]
    [([0, 1, 2], [3]), ([0, 1, 3], [2])]
    """
    if n_blocks < 2:
        raise ValueError(f"n_blocks must be at least 2, got {n_blocks}.")
    if not 1 <= n_test_blocks < n_blocks:
        raise ValueError(f"n_test_blocks must be between 1 and n_blocks - 1 ({n_blocks - 1}), "
                         f"got {n_test_blocks}.")
    if not 1 <= n_replicates <= comb(n_blocks, n_test_blocks):
        raise ValueError(f"n_replicates must be between 1 and {comb(n_blocks, n_test_blocks)}, "
                         f"the distinct partitions of {n_blocks} blocks with {n_test_blocks} "
                         f"test block(s), got {n_replicates}.")
    rng = np.random.default_rng(random_state)
    seen, out = set(), []
    while len(out) < n_replicates:
        test = tuple(sorted(rng.choice(n_blocks, n_test_blocks, replace=False).tolist()))
        if test not in seen:
            seen.add(test)
            out.append((np.setdiff1d(np.arange(n_blocks), test), np.array(test)))
    return out


def study_pool(y, *, n_texts, min_per_class, max_classes, random_state=0) -> np.ndarray:
    """The texts a study keeps of a data set: enough per class, a capped number of classes.

    Classes with fewer than ``min_per_class`` texts are left out; of the rest,
    at most ``max_classes`` are kept, drawn at random. Each kept class then
    gives ``max(min_per_class, floor(n_texts * share))`` texts (all it has if
    fewer), ``share`` being its share of the kept classes' texts.

    Returns
    -------
    ndarray
        Sorted indices into ``y``.

    Examples
    --------
    >>> from sklearn_ntps.choice.protocol import study_pool
    >>> y = [0] * 10 + [1] * 30 + [2] * 2
    >>> pool = study_pool(y, n_texts=20, min_per_class=4, max_classes=5)
    >>> [int((pool < 10).sum()), int(((pool >= 10) & (pool < 40)).sum()), int((pool >= 40).sum())]
    [5, 15, 0]
    """
    y = np.asarray(y)
    rng = np.random.default_rng(random_state)
    labels, counts = np.unique(y, return_counts=True)
    eligible = labels[counts >= min_per_class]
    if eligible.size < 2:
        raise ValueError(f"fewer than two classes have at least {min_per_class} texts.")
    if eligible.size > max_classes:
        eligible = np.sort(rng.choice(eligible, max_classes, replace=False))
    members = {c: np.flatnonzero(y == c) for c in eligible}
    total = sum(m.size for m in members.values())
    kept = []
    for m in members.values():
        want = max(min_per_class, int(n_texts * m.size / total))
        kept.append(rng.choice(m, min(want, m.size), replace=False))
    return np.sort(np.concatenate(kept))


def feature_scale(pooled) -> np.ndarray:
    """``1 / sd`` of each feature over the training texts (1 where a feature is constant).

    The probe standardises its features; every score reads the states under
    the same diagonal map (docs/validity.md, "equal footing").
    """
    sd = np.asarray(pooled, dtype=np.float64).std(axis=0)
    return np.where(sd > 0, 1.0 / np.where(sd > 0, sd, 1.0), 1.0)


# ------------------------------------------------------ statistics and scores
def block_layers(embedding, texts, blocks, *, desc, progress=True):
    """Every kept layer's statistics of each block of texts, one layer at a time.

    The model runs once over each block (every layer from the same pass);
    then, per layer, the blocks' :class:`~sklearn_ntps.Moments` come
    together, so only one layer's copies are held at a time.

    Parameters
    ----------
    embedding : HFEmbeddingTransformer
        Fitted; ``output="tokens"`` gives each block's Moments, ``"pooled"`` its
        pooled features alone.
    texts : list of str
    blocks : list of ndarray
        Disjoint text indices (:func:`~sklearn_ntps.splits.stratified_blocks`).
    desc : str
        The progress bar's label.
    progress : bool, default=True

    Yields
    ------
    layer : int
    parts : list of Moments
        One per block, in the order of ``blocks``.
    """
    per_block = [embedding.transform_layers([texts[i] for i in b]) for b in blocks]
    for parts in tqdm(zip(*per_block, strict=True), total=len(embedding.layers_), delay=2,
                      desc=desc, disable=not progress):
        yield parts[0][0], [m for _, m in parts]


def on_probe_footing(parts):
    """The blocks' moments summed and rescaled as the probe's scaler does, and the scale.

    Each feature is multiplied by ``1 / sd`` over these texts
    (:func:`~sklearn_ntps.choice.protocol.feature_scale`): the rule of
    docs/validity.md under which every score was validated, so a score
    reads the states as the probe it is judged by does.

    Parameters
    ----------
    parts : list of Moments, or list of ndarray of shape (n_texts_b, n_features)
        Disjoint blocks of texts of one layer: their moments, or their pooled
        features alone where the score reads nothing else.

    Returns
    -------
    moments : Moments or ndarray
        Of all the blocks' texts, block after block, rescaled.
    scale : ndarray of shape (n_features,)
        What the states were multiplied by: held-out features take the same.
    """
    if all(isinstance(p, np.ndarray) for p in parts):
        pooled = np.concatenate(parts)
        scale = feature_scale(pooled)
        return pooled * scale, scale
    moments = resample_blocks(parts, np.ones(len(parts), dtype=int))
    scale = feature_scale(moments.pooled)
    return moments.scaled(scale), scale


def footed_partition(parts, train, test):
    """A partition's training blocks on the probe's footing, and its test blocks under the same map.

    The test texts are scaled by the training texts' ``1 / sd``
    (:func:`on_probe_footing`), as a fitted scaler would scale them.

    Parameters
    ----------
    parts : list of Moments
        One layer's statistics of every block.
    train, test : array-like of int
        The block indices of each side.

    Returns
    -------
    moments : Moments
        The training blocks', rescaled.
    X_test : ndarray of shape (n_test_texts, n_features)
        The test blocks' pooled features, rescaled alike.
    """
    moments, scale = on_probe_footing([parts[b] for b in train])
    return moments, np.concatenate([parts[b].pooled for b in test]) * scale


def fit_scores(scorers, moments, y, *, chance=False) -> dict:
    """``{name: score}``: each scorer refitted on ``(moments, y)``, as a float.

    With ``chance``, also ``{name}_chance`` and ``{name}_chance_std``, the
    score's mean and standard deviation on shuffled labels (NaN for a score
    without them). A score at its chance level does not warn here: the caller
    reads the levels and says what they mean for the whole table.
    """
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ChanceLevelWarning)
        for name, scorer in scorers.items():
            fitted = clone(scorer).fit(moments, y)
            out[name] = float(fitted.score_)
            if chance:
                out[f"{name}_chance"] = float(getattr(fitted, "chance_", np.nan))
                out[f"{name}_chance_std"] = float(getattr(fitted, "chance_std_", np.nan))
    return out


def score_layer(scorer, parts, y_blocks):
    """One layer's score on all the texts, its chance level, and its score on each block alone.

    Each set of texts is put on the probe's footing on its own
    (:func:`~sklearn_ntps.choice.protocol.on_probe_footing`) before ``scorer`` is
    refitted on it, so a block's score is what the whole's would be had only
    that block been given. The chance level (:mod:`sklearn_ntps.scores.chance`) is
    the whole's: the blocks serve the intervals, and skip their own shuffles.

    Parameters
    ----------
    scorer : estimator
        With the NTPSScorer API: ``fit(moments, y).score_``.
    parts : list of Moments, or list of ndarray
        The layer's statistics of disjoint blocks of texts.
    y_blocks : list of array-like
        Each block's labels.

    Returns
    -------
    score : float
        On every block's texts together.
    block_scores : ndarray of shape (n_blocks,)
    chance_scores : ndarray of shape (n_shuffles,)
        The whole's score on each shuffle of its labels (empty for a score that
        reads no labels or takes no shuffles); their mean is the chance level.

    Examples
    --------
    >>> from sklearn_ntps import LogMEScorer, compute_moments
    >>> from sklearn_ntps.datasets import make_token_states
    >>> from sklearn_ntps.choice.protocol import feature_scale
    >>> from sklearn_ntps.splits import stratified_blocks
    >>> from sklearn_ntps.choice.protocol import score_layer
    >>> X, y = make_token_states("predictable", n_texts=120, random_state=0)
    >>> blocks = stratified_blocks(y, 3)
    >>> parts = [compute_moments([X[i] for i in b]) for b in blocks]
    >>> score, per_block, shuffled = score_layer(LogMEScorer(), parts, [y[b] for b in blocks])
    >>> alone = parts[0].scaled(feature_scale(parts[0].pooled))
    >>> per_block.shape, bool(per_block[0] == LogMEScorer().fit(alone, y[blocks[0]]).score_)
    ((3,), True)
    >>> bool(score > shuffled.max())  # a planted class signal, above every shuffle
    True
    """
    score, shuffled = whole_score(scorer, parts, y_blocks)
    blocks = [block_score(scorer, p, yb) for p, yb in zip(parts, y_blocks)]
    return score, np.asarray(blocks, dtype=float), shuffled


@contextmanager
def _quiet_scores():
    with warnings.catch_warnings():
        # A block of many classes has few texts of each; the labels are classes all the same.
        warnings.filterwarnings("ignore", message="The number of unique classes is greater")
        # The caller reads the chance levels, and says what they mean for the whole table.
        warnings.simplefilter("ignore", ChanceLevelWarning)
        yield


def whole_score(scorer, parts, y_blocks):
    """A layer's score on the blocks' texts together, and its scores on shuffled labels.

    Returns
    -------
    score : float
    chance_scores : ndarray of shape (n_shuffles,)
        Empty for a score that reads no labels or takes no shuffles.
    """
    with _quiet_scores():
        whole = clone(scorer).fit(on_probe_footing(parts)[0], np.concatenate(y_blocks))
    return float(whole.score_), np.asarray(getattr(whole, "chance_scores_", ()), dtype=float)


def block_score(scorer, part, y_block):
    """A layer's score on one block alone, on that block's own footing, without shuffles."""
    quick = clone(scorer)
    if "n_permutations" in quick.get_params():
        quick.set_params(n_permutations=0)
    with _quiet_scores():
        return float(quick.fit(on_probe_footing([part])[0], y_block).score_)


# ------------------------------------------------------------------ intervals
def task_interval(values, *, n_boot=N_BOOT, random_state=0, confidence=0.95) -> dict:
    """Mean over tasks with a 95% interval from a bootstrap over the tasks, with t.

    The tasks (one value each, NaN left out) are resampled with replacement
    ``n_boot`` times; the interval is the mean +- ``t(n - 1)`` quantile times
    the bootstrap standard error, since with ten to thirty tasks the normal
    quantile would be too narrow. ``n_boot=None`` takes the textbook standard
    error ``sd / sqrt(n)`` instead: Student's t interval itself, what
    :class:`~sklearn_ntps.choice.selection.LayerSelector` gives over its blocks.

    Returns
    -------
    dict
        ``estimate``, ``se``, ``low``, ``high`` and ``n`` (tasks used); the
        bounds are NaN with fewer than two tasks.

    Examples
    --------
    >>> from sklearn_ntps.choice.protocol import task_interval
    >>> cell = task_interval([1.0, 2.0, 3.0, 4.0])
    >>> cell["estimate"], cell["n"], round(cell["low"], 1), round(cell["high"], 1)
    (2.5, 4, 0.8, 4.2)
    >>> cell = task_interval([1.0, 2.0, 3.0, 4.0], n_boot=None)
    >>> round(cell["se"], 4), round(cell["low"], 2), round(cell["high"], 2)
    (0.6455, 0.45, 4.55)
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = v.size
    if n == 0:
        return {"estimate": float("nan"), "se": float("nan"), "low": float("nan"),
                "high": float("nan"), "n": 0}
    estimate = float(v.mean())
    if n < 2:
        se = float("nan")
    elif n_boot is None:
        se = float(v.std(ddof=1) / np.sqrt(n))
    else:
        rng = np.random.default_rng(random_state)
        boot = v[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
        se = float(boot.std(ddof=1))
    q = float(student_t.ppf(0.5 + confidence / 2, n - 1)) if n > 1 else float("nan")
    return {"estimate": estimate, "se": se, "low": estimate - q * se,
            "high": estimate + q * se, "n": n}


def interval(value, block_values, confidence=0.95) -> dict:
    """A 95% interval for a value computed on all the texts, from its values on disjoint blocks.

    ``value`` +- Student's t (``n_blocks - 1`` degrees of freedom) times the
    standard error of the blocks' mean, ``sd / sqrt(n_blocks)``
    (:func:`task_interval` with ``n_boot=None``): batch
    means. It is centred on ``value``, not on the blocks' mean, since a
    score shifts with the number of texts it reads (MiniLM's LogME on a fifth
    of 300 BANKING77 texts is 0.2 lower, and the margin between two of its
    layers goes from +0.04 to about 0) while its spread over the blocks still
    measures the noise; docs/selection.md says how well.

    Returns
    -------
    dict
        ``estimate`` (``value``), ``se``, ``low``, ``high``, ``n`` and ``block_mean``.

    Examples
    --------
    >>> from sklearn_ntps.choice.protocol import interval
    >>> cell = interval(0.5, [0.1, 0.2, 0.3, 0.4])
    >>> round(cell["low"], 3), round(cell["high"], 3), round(cell["block_mean"], 2)
    (0.295, 0.705, 0.25)
    """
    cell = task_interval(block_values, n_boot=None, confidence=confidence)
    half = cell["estimate"] - cell["low"]
    return {"estimate": float(value), "se": cell["se"], "low": value - half,
            "high": value + half, "n": cell["n"], "block_mean": cell["estimate"]}


def layer_ranges(layers) -> str:
    """``"layers 3-5 and 9"``: sorted layer numbers as runs.

    Examples
    --------
    >>> from sklearn_ntps.choice.protocol import layer_ranges
    >>> layer_ranges([9, 3, 4, 5]), layer_ranges([2])
    ('layers 3-5 and 9', 'layer 2')
    """
    layers = sorted(layers)
    if not layers:
        return "no layer"
    runs, start = [], layers[0]
    for prev, cur in zip(layers, [*layers[1:], None]):
        if cur != prev + 1:
            runs.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return f"{'layer' if len(layers) == 1 else 'layers'} {' and '.join(runs)}"


def noise_set(scores, block_scores, chance_scores, pick, *, confidence=0.95) -> dict:
    """Which (model, layer) pairs cannot be told apart from the pick on these texts.

    The rule (docs/selection.md, "What the pick cannot be told apart from"):

    1. Each pair's distance from chance is ``z = (score - chance) / sd``, its
       chance level and ``sd`` the mean and standard deviation of its scores on
       the shuffled labels. Every pair was scored on the same shuffles, and on
       each shuffle one pair lies furthest from chance. The pick *leaves
       chance* when its ``z`` exceeds that largest distance on every shuffle:
       with labels that say nothing about the texts, the real labelling is one
       more shuffle, so this happens at most once in ``S + 1`` (3.2% at 30
       shuffles), however many pairs were scored and whatever the shape of the
       score's distribution (Westfall and Young's max-T). If it does not, no
       pair is told apart from any other: every pair is within noise. Without
       shuffles this step is skipped.
    2. Otherwise a pair is within noise when the interval of the pick's margin
       over it (:func:`interval` of the differences on the blocks) reaches 0.

    Parameters
    ----------
    scores : array-like of shape (m,)
        Each pair's score on all the texts.
    block_scores : array-like of shape (m, n_blocks)
    chance_scores : array-like of shape (m, n_shuffles)
        Each pair's score on the same shuffles of the labels (``chance_scores_``).
    pick : int
        The index of the picked pair.
    confidence : float, default=0.95
        Of the block intervals.

    Returns
    -------
    dict
        ``within`` (bool array of shape (m,), the pick included), ``leaves_chance``
        (bool, or None without shuffles), ``z`` (each pair's distance from
        chance), ``chance`` and ``chance_std`` (each pair's), and
        ``threshold`` (the largest distance from chance on any shuffle).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.choice.protocol import noise_set
    >>> blocks = [[1.0, 1.1, 0.9], [0.5, 0.6, 0.4], [0.98, 0.9, 1.1]]
    >>> shuffles = np.array([[0.1, 0.3, 0.2, 0.2]] * 3)
    >>> out = noise_set([1.0, 0.5, 0.99], blocks, shuffles, pick=0)
    >>> out["within"].tolist(), out["leaves_chance"]
    ([True, False, True], True)
    >>> noise_set([0.25, 0.2, 0.24], blocks, shuffles, pick=0)["within"].tolist()
    [True, True, True]
    """
    scores = np.asarray(scores, dtype=float)
    block_scores = np.asarray(block_scores, dtype=float)
    shuffled = np.asarray(chance_scores, dtype=float).reshape(scores.size, -1)
    m = scores.size
    chance = np.full(m, np.nan)
    sd = np.full(m, np.nan)
    if shuffled.shape[1] >= 2:
        chance, sd = shuffled.mean(axis=1), shuffled.std(axis=1, ddof=1)
    z = distance_from_chance(scores, chance, sd)
    threshold = float(np.nanmax(distance_from_chance(shuffled, chance[:, None], sd[:, None]),
                                initial=-np.inf)) if shuffled.shape[1] >= 2 else float("nan")
    leaves = None if not np.isfinite(threshold) else bool(z[pick] > threshold)
    within = np.ones(m, dtype=bool)
    if leaves is not False:
        for j in range(m):
            if j != pick:
                cell = interval(scores[pick] - scores[j], block_scores[pick] - block_scores[j],
                                confidence)
                within[j] = not cell["low"] > 0
    return {"within": within, "leaves_chance": leaves, "z": z, "chance": chance,
            "chance_std": sd, "threshold": threshold}


def distance_from_chance(values, chance, sd):
    """``(values - chance) / sd``; 0 where a score does not move with the labels at all."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (values - chance) / sd
        off = np.sign(values - chance) * np.inf
    return np.where(sd > 0, z, np.where(values == chance, 0.0, off))


# ---------------------------------------------------------- choosing a model
def group_rows(rows, keys):
    """Rows grouped by the values of ``keys``, each group sorted by (model, layer)."""
    out = defaultdict(list)
    for r in rows:
        out[tuple(r[k] for k in keys)].append(r)
    for group in out.values():
        group.sort(key=lambda r: (r["model"], r["layer"]))
    return out


def pick_row(group, score):
    """Index of the row a score picks (its arg-max; a baseline's fixed layer)."""
    if score in BASELINES:
        return BASELINES[score](len(group))
    values = np.array([r[score] for r in group], dtype=float)
    return int(np.nanargmax(values)) if np.isfinite(values).any() else len(group) - 1


def model_choice(group, score, aggregation):
    """The model a score picks among ``group``'s rows, and the row of the layer it then uses.

    ``aggregation`` is one of :data:`AGGREGATIONS`: a model's value is its
    best layer's score (``"best-layer"``) or the mean over its layers
    (``"layer-mean"``), transformer-ranker's two; the layer is then the
    score's arg-max within that model. The one rule the study's model-choice
    regrets and :class:`~sklearn_ntps.choice.selection.LayerSelector` both follow.

    Returns
    -------
    rows : list of dict
        The chosen model's rows, by layer.
    row : dict
        The chosen layer's.
    """
    by_model = group_rows(group, ("model",))
    models = sorted(by_model)
    values = []
    for m in models:
        v = np.array([r[score] for r in by_model[m]], dtype=float)
        v = v[np.isfinite(v)]
        values.append(np.nan if not v.size else v.max() if aggregation == "best-layer"
                      else v.mean())
    values = np.asarray(values, dtype=float)
    chosen = by_model[models[int(np.nanargmax(values)) if np.isfinite(values).any() else 0]]
    return chosen, chosen[pick_row(chosen, score)]
