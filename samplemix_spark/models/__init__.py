"""Model and tokenizer locations (``paths``) and the shared transformer encoder (``encoder``).

``encoder`` imports torch and transformers; import it only where a model runs.
"""
