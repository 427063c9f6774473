"""Mixing (SPEC §3): sampling weights, softmax counts and the exploded output dataset.

``formulas`` holds equations 2-4 and the count rule; ``weights`` runs the global
aggregates and writes the tables; ``output`` explodes counts into copies.
"""

from samplemix_spark.mixing.weights import MixStats, MixStep, read_stats

__all__ = ["MixStats", "MixStep", "read_stats"]
