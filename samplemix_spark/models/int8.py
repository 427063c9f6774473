"""Int8 linear layers for CPU encoders whose output for a row depends on that row alone.

Runs wherever the encoder runs (driver or executor, CPU). torch's dynamic int8
quantisation (``quantize_dynamic``) scales the activations of a whole batch by
one factor, so a document's vector would change with its batch-mates and with
partitioning, which breaks engine parity and the refresh-equals-full-run
guarantee. Here each token row is first divided by its own largest magnitude,
so every row lies in [-1, 1], and then quantised with one fixed scale:

    a   = max|x_row|                                   (per row, at run time)
    x_q = round((x / a) / s) + z,  s = 2/127, z = 64   (fixed: 7 bits)
    W_q = round(W / s_w),  s_w = max|W_out| / 127      (per output channel, once)
    y   = a * ((x_q - z) @ W_q^T) * s * s_w + b

The integer product accumulates exactly in int32, so a row's output is the same
bits whatever else is in the batch. Seven bits, not eight: the AVX2 kernel adds
pairs of u8 x s8 products in int16, which saturates with 8-bit activations (a
relative error of 13% instead of 1.5% per layer, measured).

The kernel is fbgemm's (x86). Where this torch has no such kernel,
``int8_available`` says so and the encoder stays in fp32.
"""

from __future__ import annotations

import warnings
from typing import Callable, Optional

import torch

from samplemix_spark.models.linear import replace_linear_layers

# Fixed activation quantisation of a row scaled into [-1, 1]: 7 bits (see the module docstring).
ACTIVATION_SCALE = 2.0 / 127.0
ACTIVATION_ZERO_POINT = 64


def _kernel() -> Optional[Callable]:
    return getattr(torch.ops.quantized, "linear_with_input_q_dq_qweight_dq_output_fp32", None)


def _pack(weight: torch.Tensor):
    """fbgemm-packed int8 weights, one scale per output channel."""
    scale = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    with warnings.catch_warnings():  # quantized tensors are deprecated in favour of torchao, not yet removed
        warnings.simplefilter("ignore")
        quantized = torch.quantize_per_channel(weight.float(), scale, zero_points, 0, torch.qint8)
        return torch.ops.quantized.linear_prepack(quantized, None)


def int8_available() -> bool:
    """Whether this torch build has the x86 int8 kernel the encoder's int8 path needs."""
    if _kernel() is None or "x86" not in torch.backends.quantized.supported_engines:
        return False
    try:
        _kernel()(torch.zeros(2, 8), ACTIVATION_SCALE, ACTIVATION_ZERO_POINT, _pack(torch.ones(4, 8)))
    except (RuntimeError, NotImplementedError):
        return False
    return True


class RowwiseInt8Linear(torch.nn.Module):
    """A frozen ``nn.Linear`` with int8 weights per output channel and 7-bit activations per row."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.kernel = _kernel()  # looked up once, not on every forward pass
        self.packed = _pack(linear.weight.detach())
        self.bias = linear.bias.detach().float() if linear.bias is not None else torch.zeros(linear.out_features)
        self.out_features = linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        magnitude = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
        product = self.kernel(rows / magnitude, ACTIVATION_SCALE, ACTIVATION_ZERO_POINT, self.packed)
        return torch.addcmul(self.bias, product, magnitude).reshape(*x.shape[:-1], self.out_features)


def quantize_linear_layers(model: torch.nn.Module) -> int:
    """Replace every ``nn.Linear`` of ``model`` in place; returns how many were replaced."""
    return replace_linear_layers(model, RowwiseInt8Linear)
