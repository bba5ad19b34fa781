"""Next Token Perception Score (NTPS) as scikit-learn estimators.

The folders follow the data flow, each importing only those before it:
``states`` (text -> hidden states -> statistics), ``scores`` (NTPS and its
peers on one scorer contract, and the registry of scores), ``choice`` (the
protocol, the probe, the selector), ``evidence`` (the report and the studies)
and ``lora``; ``datasets``, ``splits``, ``checks`` and ``_utils`` lie below
them all and ``cli`` on top.
"""

from .choice.probe import default_probe
from .choice.selection import LayerSelector
from .lora.classifier import HFLoRAClassifier
from .scores.base import FunctionScorer
from .scores.chance import ChanceLevelWarning, permutation_test
from .scores.estimators import NTPSScorer, NTPSSubspaceProbe
from .scores.ntps import ntps_curve, ntps_score
from .scores.peer_estimators import (
    HScoreScorer,
    KNNScorer,
    LogMEScorer,
    RankMeScorer,
    RidgeProbeScorer,
    TransRateScorer,
)
from .scores.registry import register_score
from .states.embedding import HFEmbeddingTransformer
from .states.moments import MomentAccumulator, compute_moments, pooled_features
from .states.statistics import Moments, Statistics

__version__ = "0.1.0.dev0"

__all__ = [
    "ChanceLevelWarning",
    "FunctionScorer",
    "HFEmbeddingTransformer",
    "HFLoRAClassifier",
    "HScoreScorer",
    "KNNScorer",
    "LayerSelector",
    "LogMEScorer",
    "MomentAccumulator",
    "Moments",
    "NTPSScorer",
    "NTPSSubspaceProbe",
    "RankMeScorer",
    "RidgeProbeScorer",
    "Statistics",
    "TransRateScorer",
    "compute_moments",
    "default_probe",
    "ntps_curve",
    "ntps_score",
    "permutation_test",
    "pooled_features",
    "register_score",
]
