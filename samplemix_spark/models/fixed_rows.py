"""Exact fp32 linear layers on CPU whose output for a row does not depend on how many rows came with it.

Runs wherever the encoder runs (driver or executor, CPU). A BLAS picks its GEMM
kernel by the shape of the call, and on some CPUs the rows of a small call
(under a few hundred rows, with a 1,536-wide input) come out a few ulps away from
the same rows inside a large one. An encoder's linear layers see
documents x tokens rows, so a document's vector would then change with its
batch-mates, and with partitioning, which breaks engine parity and the
refresh-equals-full-run guarantee. Here every product is taken over exactly
``ROWS`` rows: larger inputs in blocks of ``ROWS``, the last block (and any
smaller input) padded with zero rows, so every row meets the same kernel.
Measured on the quick start's texts (64 tokens, batches of 64): 2-4% slower than
one call per batch. Under autograd (training) the plain layer runs.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from samplemix_spark.models.linear import replace_linear_layers

ROWS = 2048


class FixedRowsLinear(torch.nn.Module):
    """An ``nn.Linear`` (same parameters) whose inference products always have ``ROWS`` rows."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.out_features = linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.device.type != "cpu":
            return F.linear(x, self.weight, self.bias)
        rows = x.reshape(-1, x.shape[-1])
        n = rows.shape[0]
        weight = self.weight.t()
        bias = self.bias if self.bias is not None else rows.new_zeros(self.out_features)
        out = rows.new_empty(n, self.out_features)
        full = n - n % ROWS
        for start in range(0, full, ROWS):
            torch.addmm(bias, rows[start:start + ROWS], weight, out=out[start:start + ROWS])
        if full < n:
            tail = rows.new_zeros(ROWS, rows.shape[1])
            tail[:n - full] = rows[full:]
            out[full:] = torch.addmm(bias, tail, weight)[:n - full]
        return out.reshape(*x.shape[:-1], self.out_features)


def fix_linear_rows(model: torch.nn.Module) -> int:
    """Replace every ``nn.Linear`` of ``model`` in place; returns how many were replaced."""
    return replace_linear_layers(model, FixedRowsLinear)
