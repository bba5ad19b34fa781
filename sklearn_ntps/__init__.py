"""Next Token Perception Score (NTPS) as scikit-learn estimators.

Data flow: text -> hidden states (``extraction``, run by ``embedding``'s
transformer) -> moments (``moments``, held in ``statistics``) -> subspaces
(``subspaces``) -> score (``scoring``, ``estimators``) -> choice (``selection``).
"""

from .chance import ChanceLevelWarning, permutation_test
from .embedding import HFEmbeddingTransformer
from .estimators import NTPSScorer, NTPSSubspaceProbe
from .lora import HFLoRAClassifier
from .moments import MomentAccumulator, Moments, Statistics, compute_moments, pooled_features
from .peer_estimators import (
    HScoreScorer,
    KNNScorer,
    LogMEScorer,
    RankMeScorer,
    RidgeProbeScorer,
    TransRateScorer,
)
from .probe import default_probe
from .scoring import ntps_curve, ntps_score
from .selection import LayerSelector

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
