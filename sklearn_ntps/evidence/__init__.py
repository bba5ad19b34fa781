"""Stage 4: what the scores are worth: the report and the study's statistics."""
