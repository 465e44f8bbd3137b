"""Adapters that let MONAI nets with other output conventions plug into the bundles."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

__all__ = ["FirstOutput", "TemperatureScaled"]


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


class TemperatureScaled(nn.Module):
    """Divide a net's logits by a temperature per channel (post-hoc calibration, see
    :func:`monai_seg.metrics.fit_temperature`).

    The temperature is a buffer: the wrapper exports to TorchScript with its net, and a sampling inferer
    (:class:`~monai_seg.inferers.MCDropoutInferer`) that calls it scales each sample's logits before the
    activation.

    Args:
        network: a net returning logits (B, C, *spatial).
        temperature: one value for every channel, or C values; each > 0.

    Raises:
        ValueError: when a temperature is not positive and finite.

    Shapes: (B, C_in, *spatial) -> (B, C, *spatial).
    """

    def __init__(self, network: nn.Module, temperature: float | Sequence[float] | torch.Tensor) -> None:
        super().__init__()
        t = torch.as_tensor(temperature, dtype=torch.float32).flatten()
        if t.numel() == 0 or not bool(torch.isfinite(t).all() and (t > 0).all()):
            raise ValueError(f"temperatures must be positive and finite, got {t.tolist()}.")
        self.network = network
        self.register_buffer("temperature", t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.network(x)
        shape = [1, -1] + [1] * (logits.dim() - 2)
        return logits / self.temperature.to(logits).view(shape)
