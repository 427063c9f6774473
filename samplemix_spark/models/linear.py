"""Swapping a model's linear layers for variants that keep a row's output independent of its batch-mates."""

from __future__ import annotations

from typing import Callable

import torch


def replace_linear_layers(model: torch.nn.Module, make: Callable[[torch.nn.Linear], torch.nn.Module]) -> int:
    """Replace every ``nn.Linear`` of ``model`` in place by ``make(layer)``; returns how many were replaced."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, make(child))
                replaced += 1
    return replaced
