"""Stage 2: statistics -> a number per layer.

NTPS, its peers, their chance levels, the scorer estimators and the registry of scores.
"""
