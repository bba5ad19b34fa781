"""Stage 1: text -> hidden states -> statistics.

Models, extraction, the typed moments, their cache and sharding, and HFEmbeddingTransformer.
"""
