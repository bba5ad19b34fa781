"""On top: LoRA fine-tuning as a classifier, its adapters, and the prescreen."""
