"""Racing: read the texts in rounds, and stop scoring the (model, layer) pairs already behind.

A forward pass over every text of every model is most of what choosing costs,
even for models clearly behind after a few hundred texts, and for the layers
above the deepest one still in contention. So the selector reads the texts'
disjoint stratified blocks in rounds (a quarter, a half, all of them, each
round at least three blocks: with the default five blocks, three and then the
rest). After each round but the last, every pair still in contention has a
score on each block it has read and on all of them together; the *leader* is
the pair of highest score so far, and a pair stops when the leader's margin
over it, so far and extrapolated to all the texts (a score shifts with the
number of texts it reads, not alike for every layer: :func:`separated_below`),
stays above zero by the half-width of Student's t interval at ``confidence``
(95%, the printed intervals' level) over the paired block differences. Two
blocks give one degree of freedom, an interval too wide to stop anything,
hence three at least. A stopped pair keeps the score of the blocks it read.
A model with no pair left is not run again, and a model whose deepest
remaining layer is below its last runs only through that layer
(:func:`~sklearn_ntps.states.extraction.states_through`).

The stopped pairs are separated from the leader on the blocks they read, so
they lie outside the set the pick cannot be told apart from on those blocks;
``tests/test_racing.py`` holds the racing pick inside the full run's set.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import clone
from tqdm.auto import tqdm

from ..states.models import release_models
from .protocol import block_score, task_interval, whole_score

__all__ = ["CONFIDENCE", "ROUNDS", "race", "round_ends", "separated_below"]

# The share of the texts read by the end of each round.
ROUNDS = (0.25, 0.5, 1.0)
CONFIDENCE = 0.95


def round_ends(n_blocks, fractions=ROUNDS) -> list:
    """How many blocks have been read by the end of each round: at least three, then rising.

    Examples
    --------
    >>> from sklearn_ntps.choice.racing import round_ends
    >>> round_ends(5), round_ends(10), round_ends(2)
    ([3, 5], [3, 5, 10], [2])
    """
    ends = sorted({min(n_blocks, max(3, math.ceil(f * n_blocks))) for f in fractions})
    return ends if ends[-1] == n_blocks else [*ends, n_blocks]


def separated_below(block_scores, so_far, *, n_block, n_so_far, n_all,
                    confidence=CONFIDENCE) -> list:
    """The pairs the leader beats now, and would still beat on all the texts, by an interval.

    A score shifts with the number of texts it reads, and not alike for every
    layer: H-score with Ledoit-Wolf shrinkage ranks SmolLM2's hidden state 22
    far above state 0 on blocks of 600 BANKING77 texts (58.3 against 48.7),
    barely on 1,800 (41.7 against 40.8), and below it on 3,000 (37.2 against
    38.6). So the margin is read at two sizes, a block's (``n_block``) and the
    texts read so far (``n_so_far``), and extrapolated linearly in ``1 / n`` to
    all the texts (``n_all``). A pair stops when the smaller of its margin so far
    and the extrapolated one stays above zero by the half-width of Student's t
    interval (at ``confidence``) of the paired block differences.

    Parameters
    ----------
    block_scores : dict
        ``{pair: sequence of float}``: each pair's score on each block read.
    so_far : dict
        ``{pair: float}``: each pair's score on all the blocks read together.
    n_block, n_so_far, n_all : float
        Texts in a block (on average), read so far, and in all.
    confidence : float, default=0.95

    Returns
    -------
    behind : list
        The pairs separated below the leader (the pair of highest score so far).

    Examples
    --------
    >>> from sklearn_ntps.choice.racing import separated_below
    >>> blocks = {"a": [1.0, 1.1, 0.9], "b": [0.2, 0.25, 0.1], "c": [0.9, 1.2, 0.8]}
    >>> separated_below(blocks, {"a": 1.0, "b": 0.2, "c": 0.95}, n_block=100, n_so_far=300,
    ...                 n_all=500)
    ['b']
    >>> # b gains on a as the texts grow: behind by 0.8 on a block, by 0.3 on three.
    >>> separated_below(blocks, {"a": 1.0, "b": 0.7, "c": 0.95}, n_block=100, n_so_far=300,
    ...                 n_all=5000)
    []
    """
    leader = max(so_far, key=so_far.get)
    # The margin at n = n_all on the line through (1 / n_block, m_block), (1 / n_so_far, m_now).
    reach = (1 / n_all - 1 / n_so_far) / (1 / n_so_far - 1 / n_block)
    behind = []
    for pair, values in block_scores.items():
        if pair == leader:
            continue
        diffs = np.asarray(block_scores[leader]) - np.asarray(values)
        cell = task_interval(diffs, n_boot=None, confidence=confidence)
        half = cell["estimate"] - cell["low"]
        now = so_far[leader] - so_far[pair]
        at_all = now + (now - cell["estimate"]) * reach
        if min(now, at_all) - half > 0:
            behind.append(pair)
    return behind


def race(embeddings, texts, blocks, y_blocks, scorer, *, racing=True, fractions=ROUNDS,
         confidence=CONFIDENCE, progress=True):
    """Score every (model, layer) pair on the blocks, in rounds, stopping those behind.

    Parameters
    ----------
    embeddings : dict
        ``{name: HFEmbeddingTransformer}``, fitted; each pair is one of its ``layers_``.
    texts : list of str
    blocks : list of ndarray
        Disjoint stratified blocks of text indices, read in order.
    y_blocks : list of ndarray
        Each block's label codes.
    scorer : estimator
    racing : bool, default=True
        False reads every block for every pair (one round).
    fractions : tuple of float, default=ROUNDS
    confidence : float, default=CONFIDENCE
    progress : bool, default=True

    Returns
    -------
    rows : list of dict
        One per pair: ``model``, ``layer``, ``score`` (on the blocks it read),
        ``block_scores`` (one per block; NaN for a block not read),
        ``chance_scores``, ``n_blocks`` read, ``n_texts`` read and
        ``stopped_after`` (the round after which it stopped, None if it ran
        to the end).
    parts : dict
        ``{(model, layer): list of each block's statistics}`` for each model's
        best-scoring layer that read every block (the pick is one of them);
        None for the others, whose statistics were let go as soon as they were
        scored.
    """
    ends = round_ends(len(blocks), fractions) if racing else [len(blocks)]
    # The scores so far decide who stops; their chance levels are not needed for that.
    scorer_quick = clone(scorer)
    if "n_permutations" in scorer_quick.get_params():
        scorer_quick.set_params(n_permutations=0)
    live = {name: list(emb.layers_) for name, emb in embeddings.items()}
    parts = {(name, layer): [] for name, layers in live.items() for layer in layers}
    scores = {pair: [] for pair in parts}
    rows, start = {}, 0

    def finish(pair, stopped_after):
        # The score on every block the pair read; its statistics then go (below), so only
        # the pairs still racing hold theirs.
        seen = parts[pair]
        score, shuffled = whole_score(scorer, seen, y_blocks[: len(seen)])
        rows[pair] = {"model": pair[0], "layer": pair[1], "score": score,
                      "block_scores": np.r_[scores[pair], np.full(len(blocks) - len(seen),
                                                                  np.nan)],
                      "chance_scores": shuffled, "n_blocks": len(seen),
                      "n_texts": int(sum(blocks[b].size for b in range(len(seen)))),
                      "stopped_after": stopped_after}

    for round_, end in enumerate(ends, start=1):
        last = end == len(blocks)
        for name, layers in tqdm(list(live.items()), desc=f"round {round_} of {len(ends)}",
                                 disable=not progress or len(ends) == 1):
            if not layers:
                continue
            emb = embeddings[name]
            _hold_only(embeddings, name)
            if layers != list(emb.layers_):  # only the layers still in contention
                emb = clone(emb).set_params(layers=layers, layer=layers[0]).fit()
            for b in range(start, end):
                for layer, part in emb.transform_layers([texts[i] for i in blocks[b]]):
                    parts[name, layer].append(part)
                    scores[name, layer].append(block_score(scorer, part, y_blocks[b]))
            if last:
                for layer in layers:
                    finish((name, layer), None)
                # The model's best layer keeps its statistics: the pick's features, if it is.
                best = max(layers, key=lambda layer: rows[name, layer]["score"])
                for layer in layers:
                    if layer != best:
                        parts[name, layer] = None
        if last:
            break
        contenders = {pair: scores[pair] for pair in scores if pair not in rows}
        so_far = {pair: whole_score(scorer_quick, parts[pair], y_blocks[:end])[0]
                  for pair in contenders}
        n_so_far = sum(blocks[b].size for b in range(end))
        n_all = sum(b.size for b in blocks)
        for pair in separated_below(contenders, so_far, n_block=n_so_far / end,
                                    n_so_far=n_so_far, n_all=n_all, confidence=confidence):
            live[pair[0]].remove(pair[1])
            finish(pair, round_)
            parts[pair] = None
        start = end
    return [rows[pair] for pair in scores], parts


def _hold_only(embeddings, name):
    """Let the other models' weights go before ``name`` runs: one model in memory at a time.

    The three bundled models together held 1.1 GB that the peer, which drops each model
    after its pass, does not (docs/performance.md); reloading costs about a second each.
    """
    own = embeddings[name].model_fingerprint_
    release_models({e.model_fingerprint_ for e in embeddings.values()} - {own})
