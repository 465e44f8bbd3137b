"""Adapters that let MONAI nets with other output conventions plug into the bundles."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["FirstOutput"]


class FirstOutput(nn.Module):
    """Return only the first output of a net that returns a list of tensors.

    MONAI's ``BasicUNetPlusPlus`` returns ``[logits]`` (or one tensor per deep-supervision level,
    full resolution first); MONAI's trainers, losses and inferers expect one tensor.

    Args:
        network: a net whose forward returns a list of tensors.

    Shapes: (B, C_in, *spatial) -> the first output, e.g. (B, C_out, *spatial).
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: list[torch.Tensor] = self.network(x)
        return outputs[0]
