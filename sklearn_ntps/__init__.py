"""Next Token Perception Score (NTPS) as scikit-learn estimators.

Data flow: text -> hidden states (``extraction``, run by ``embedding``'s
transformer) -> moments (``moments``, held in ``statistics``) -> subspaces
(``subspaces``) -> score (``scoring``, ``estimators``) -> choice (``selection``).
"""

from .choice.probe import default_probe
from .choice.selection import LayerSelector
from .lora.classifier import HFLoRAClassifier
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
from .states.embedding import HFEmbeddingTransformer
from .states.moments import MomentAccumulator, Moments, Statistics, compute_moments, pooled_features

__version__ = "0.1.0.dev0"

__all__ = [
    "ChanceLevelWarning",
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
]
