"""Racing: read the texts in rounds, and stop scoring the (model, layer) pairs already behind.

A forward pass over every text of every model is most of what choosing costs,
even for models clearly behind after a few hundred texts, and for the layers
above the deepest one still in contention. So the selector reads the texts'
disjoint stratified blocks in rounds (a quarter, a half, all of them, each
round at least three blocks: with the default five blocks, three and then the
rest). After each round but the last, every pair still in contention has a
score on each block it has read; the *leader* is the pair of highest mean
block score, and a pair stops when the interval of the leader's margin over it
lies above zero: Student's t at ``confidence`` (95%, the printed intervals'
level) over the paired block differences, the rule the printout applies to
the margin. Two blocks give one degree of freedom, an interval too wide to
stop anything, hence three at least. A stopped pair
keeps the score of the blocks it read. A model with no pair left is not run
again, and a model whose deepest remaining layer is below its last runs only
through that layer (:func:`~sklearn_ntps.states.extraction.states_through`).

The stopped pairs are separated from the leader on the blocks they read, so
they lie outside the set the pick cannot be told apart from on those blocks;
``tests/test_racing.py`` holds the racing pick inside the full run's set.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import clone
from tqdm.auto import tqdm

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


def separated_below(block_scores, confidence=CONFIDENCE) -> list:
    """The pairs whose block scores the leader's beat, by a paired t-interval above zero.

    Parameters
    ----------
    block_scores : dict
        ``{pair: sequence of float}``, every pair scored on the same blocks.
    confidence : float, default=0.95

    Returns
    -------
    behind : list
        The pairs separated below the leader (the pair of highest mean).

    Examples
    --------
    >>> from sklearn_ntps.choice.racing import separated_below
    >>> separated_below({"a": [1.0, 1.1, 0.9], "b": [0.2, 0.25, 0.1], "c": [0.9, 1.2, 0.8]})
    ['b']
    """
    means = {pair: float(np.mean(v)) for pair, v in block_scores.items()}
    leader = max(means, key=means.get)
    behind = []
    for pair, values in block_scores.items():
        if pair == leader:
            continue
        diffs = np.asarray(block_scores[leader]) - np.asarray(values)
        if task_interval(diffs, n_boot=None, confidence=confidence)["low"] > 0:
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
        for pair in separated_below(contenders, confidence):
            live[pair[0]].remove(pair[1])
            finish(pair, round_)
            parts[pair] = None
        start = end
    return [rows[pair] for pair in scores], parts
