"""The encoder-decoder skeleton shared by monai-seg's U-Nets."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from monai_seg.networks.blocks import check_spatial_size

__all__ = ["EncoderDecoderNet", "check_net_args"]

# a leaf for torch.fx: its loop over the input's shape cannot be traced symbolically, and
# MCDropoutInferer traces the nets to find their deterministic prefix
torch.fx.wrap("check_spatial_size")


def check_net_args(
    spatial_dims: int, in_channels: int, out_channels: int, channels: Sequence[int], dropout: float
) -> tuple[int, ...]:
    """Validate the arguments every monai-seg net shares and return ``channels`` as a tuple.

    Raises:
        ValueError: when a value is out of range.
    """
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}.")
    if in_channels < 1 or out_channels < 1:
        raise ValueError(f"in_channels and out_channels must be >= 1, got {in_channels} and {out_channels}.")
    channels = tuple(channels)
    if len(channels) < 2 or any(c < 1 for c in channels):
        raise ValueError(f"channels needs at least two positive values (levels), got {channels}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    return channels


class EncoderDecoderNet(nn.Module):
    """U-shaped net: ``encoder`` levels produce skips, ``decoder`` levels consume them, ``head`` maps to logits.

    Subclasses build the three parts; this class owns the forward pass and the input-size check.

    Args:
        encoder: levels; level ``i`` halves the spatial size for ``i > 0`` and its output is skip ``i``.
        decoder: :class:`~monai_seg.networks.blocks.DecoderLevel` modules, deepest first, one fewer
            than the encoder levels.
        head: final layer (1x1 convolution to ``out_channels``, no activation).

    Shapes: (B, in_channels, *spatial) -> (B, out_channels, *spatial); every spatial size must divide
    by :attr:`stride` ``= 2 ** (len(encoder) - 1)``.
    """

    def __init__(self, encoder: nn.ModuleList, decoder: nn.ModuleList, head: nn.Module) -> None:
        super().__init__()
        if len(decoder) != len(encoder) - 1:
            raise ValueError(f"need one decoder level fewer than encoder levels, got {len(decoder)} and {len(encoder)}.")
        self.encoder = encoder
        self.decoder = decoder
        self.head = head
        self.stride = 2 ** (len(encoder) - 1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Run the encoder; returns the output of every level, the bottleneck last."""
        check_spatial_size(x, self.stride)
        skips: list[torch.Tensor] = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
        return skips

    def decode(self, skips: list[torch.Tensor]) -> torch.Tensor:
        """Run the decoder and the head on the encoder outputs; returns logits."""
        x = skips[-1]
        for i, level in enumerate(self.decoder):
            x = level(x, skips[-2 - i])
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
