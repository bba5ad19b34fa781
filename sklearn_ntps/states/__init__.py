"""Stage 1: text -> hidden states -> statistics (models, extraction, the typed
moments, their cache and sharding, and HFEmbeddingTransformer)."""
