"""The proxy model's presets and the separator that joins documents in its training stream.

Kept apart from ``byte_lm`` so that a driver that plans proxies and stages their
streams, while Spark tasks train them, never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

# Documents are joined with a blank line in a training stream, and held-out documents are read after one.
SEPARATOR = b"\n\n"


@dataclass(frozen=True)
class Preset:
    """Model size, context, batch and the training budget in bytes."""

    name: str
    d_model: int
    n_layer: int
    n_head: int
    context: int
    batch_size: int
    budget_bytes: int
    learning_rate: float
    evaluations: int = 8  # held-out evaluations over the run, the last at the final step

    def steps(self) -> int:
        """Optimiser steps over ``budget_bytes``: one window of ``context`` bytes per row, ``batch_size`` rows."""
        return max(1, (self.budget_bytes // self.context) // self.batch_size)


PRESETS = {
    # Seconds on one CPU core: for the test suite and CI.
    "test": Preset("test", d_model=32, n_layer=1, n_head=2, context=32, batch_size=8, budget_bytes=131072,
                   learning_rate=1e-2, evaluations=4),
    # About a minute on 2 CPU cores (RegMix's proxies are ~1M parameters; this one is 0.26M).
    "cpu": Preset("cpu", d_model=96, n_layer=2, n_head=4, context=128, batch_size=16, budget_bytes=2 << 20,
                  learning_rate=2e-3),
    # The fidelity reference on CPU (benchmarks/proxy_fidelity.py): 9.5x the cpu preset's parameters and
    # 2x its bytes, the same context and step count; scored at the final step only, since only its
    # final ranking is used. 6 to 8 minutes per proxy on 2 CPU cores.
    "reference": Preset("reference", d_model=256, n_layer=3, n_head=8, context=128, batch_size=32,
                        budget_bytes=4 << 20, learning_rate=1e-3, evaluations=1),
    # Tens of millions of parameters for a GPU (Olmix's swarm uses 14M): 25M here.
    "gpu": Preset("gpu", d_model=512, n_layer=8, n_head=8, context=512, batch_size=64, budget_bytes=256 << 20,
                  learning_rate=6e-4),
}
