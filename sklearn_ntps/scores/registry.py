"""Every score by name: the one list the report, ``select``, the CLI and the prescreen read.

A name maps to a scorer in its default configuration. The report's columns
are :func:`default_scorers`; ``select --score`` and ``LayerSelector(scorer=)``
take any name here; the LoRA prescreen reads the names registered with
``prescreen=True``. A new score is one function and one line::

    register_score("class_distance", FunctionScorer(score_func=class_distance))

after which it is a column of ``sklearn-ntps report``, a ``--score`` of
``sklearn-ntps select`` and a ``scorer=`` of :class:`~sklearn_ntps.LayerSelector`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sklearn.base import clone

from .._sklearn_compat import StrOptions
from .base import BaseScorer, FunctionScorer
from .estimators import NTPSScorer
from .peer_estimators import (
    HScoreScorer,
    KNNScorer,
    LogMEScorer,
    RankMeScorer,
    RidgeProbeScorer,
    TransRateScorer,
)

__all__ = ["SCORE_NAME", "Score", "default_scorers", "register_score", "registered_scores",
           "score_names", "unregister_score"]


@dataclass(frozen=True)
class Score:
    """One registered score: its scorer in the default configuration, and where it is shown.

    Attributes
    ----------
    name : str
        The report's column and the CLI's ``--score``.
    scorer : BaseScorer
        Cloned before every use; never fitted in place.
    label : str
        How tables and plots name it.
    prescreen : bool
        Whether ``lora-prescreen`` reads it as a predictor of LoRA's gain.
    """

    name: str
    scorer: BaseScorer
    label: str
    prescreen: bool = False


def _builtin() -> dict:
    ntps = NTPSScorer()
    other = "paper" if ntps.variant == "whitened" else "whitened"
    entries = [
        Score("ntps", ntps, "NTPS"),
        Score(f"ntps_{other}", NTPSScorer(variant=other), f"NTPS, {other} variant"),
        Score("ntps_paper_exact", NTPSScorer(variant="paper", centering=False, shrinkage=None,
                                             rtol=0.0), "NTPS, paper's exact form"),
        Score("logme", LogMEScorer(), "LogME", prescreen=True),
        Score("hscore", HScoreScorer(), "H-score"),
        Score("transrate", TransRateScorer(), "TransRate"),
        Score("rankme", RankMeScorer(), "RankMe"),
        Score("knn", KNNScorer(), "k-NN (3-NN LOO)", prescreen=True),
        Score("ridge_loo", RidgeProbeScorer(), "ridge LOO probe", prescreen=True),
    ]
    return {e.name: e for e in entries}


_REGISTRY: dict = _builtin()


def register_score(name, scorer, *, label=None, prescreen=False) -> Score:
    """Add a score to the report, ``select``, the CLI and (optionally) the prescreen.

    Parameters
    ----------
    name : str
        A new name: letters, digits and underscores (it becomes a column).
    scorer : estimator or callable
        A scorer with ``fit(X, y).score_`` (a :class:`~sklearn_ntps.scores.base.BaseScorer`
        subclass gets a chance level), or a function ``f(features, codes) ->
        float`` that :class:`~sklearn_ntps.scores.base.FunctionScorer` wraps.
    label : str, default=None
        How tables name it; None uses ``name``.
    prescreen : bool, default=False
        Also a predictor of ``lora-prescreen``.

    Returns
    -------
    score : Score
        The registered entry.

    Raises
    ------
    ValueError
        When ``name`` is taken or not an identifier.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.scores.registry import register_score, unregister_score
    >>> def spread(X, codes):
    ...     return float(np.ptp(X[:, 0]))
    >>> register_score("spread", spread).label
    'spread'
    >>> unregister_score("spread")
    """
    if not (isinstance(name, str) and name.isidentifier()):
        raise ValueError(f"A score's name must be an identifier (letters, digits, _), got "
                         f"{name!r}.")
    if name in _REGISTRY:
        raise ValueError(f"A score named {name!r} is already registered; "
                         "unregister_score it first to replace it.")
    if not hasattr(scorer, "fit"):
        if not callable(scorer):
            raise TypeError(f"scorer must be an estimator with fit(X, y).score_ or a function "
                            f"f(features, codes) -> float, got {type(scorer).__name__}.")
        scorer = FunctionScorer(score_func=scorer, name=name)
    entry = Score(name, scorer, label or name, prescreen)
    _REGISTRY[name] = entry
    return entry


def unregister_score(name) -> None:
    """Remove a score added by :func:`register_score` (a built-in one cannot go)."""
    if name in _builtin():
        raise ValueError(f"{name!r} is a built-in score; it cannot be unregistered.")
    _REGISTRY.pop(name)


def registered_scores() -> dict:
    """``{name: Score}`` of every score, the built-in ones first, in registration order."""
    return dict(_REGISTRY)


def score_names(*, prescreen=None) -> list:
    """The registered names; with ``prescreen=True``, those the LoRA prescreen reads."""
    return [n for n, e in _REGISTRY.items() if prescreen is None or e.prescreen == prescreen]


def default_scorers() -> dict:
    """``{name: scorer}``: an unfitted clone of every registered score, the report's columns.

    Examples
    --------
    >>> from sklearn_ntps.scores.registry import default_scorers
    >>> list(default_scorers())[:4]
    ['ntps', 'ntps_paper', 'ntps_paper_exact', 'logme']
    """
    return {name: clone(entry.scorer) for name, entry in _REGISTRY.items()}


class _RegisteredName(StrOptions):
    """A parameter constraint: the name of a registered score, read when it is checked.

    A score registered after the estimator's class was defined is accepted too.
    """

    def __init__(self):
        super().__init__(set(score_names()))

    @property
    def options(self):
        return set(score_names())

    @options.setter
    def options(self, value):
        pass  # the registry is the one list


# For ``_parameter_constraints``: any registered score's name.
SCORE_NAME = _RegisteredName()
