"""ResU-Net: a U-Net whose levels are stacks of residual blocks (the BraTS uncertainty study,
docs/studies.md#brats-resu-net-with-monte-carlo-dropout)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn
from monai.networks.blocks import UpSample
from monai.networks.layers.factories import Conv, Pool

from monai_seg.networks.base import EncoderDecoderNet, check_net_args
from monai_seg.networks.blocks import (
    DecoderLevel,
    ResidualBlock,
    check_dropout_location,
    dropout_layer,
    ensure_sequence,
)

__all__ = ["ResUNet"]


class ResUNet(EncoderDecoderNet):
    """Residual U-Net in 1D/2D/3D.

    Encoder level ``i`` stacks ``blocks[i]`` :class:`~monai_seg.networks.blocks.ResidualBlock` s, each
    followed by spatial (channel-wise) dropout; levels are joined by 2x max-pooling. Each decoder
    level upsamples with a 2x transposed convolution to the skip's channels, concatenates the skip
    and applies one residual block and dropout; a 1x1 convolution gives the logits.

    Parameters with the defaults (the BraTS study's configuration, 4 input channels, 1 output, 2D):
    3,283,809. The study reports ~6.85M for its Keras model without giving its decoder or block
    details (a mirrored decoder with 4/3/2/1 blocks would still give only 4.34M);
    the encoder here follows its description exactly (16/32/64/128/128 channels, 1/2/3/4/4 blocks).

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: input channels.
        out_channels: output channels (logits, no activation).
        channels: features per level, shallowest first; the net's stride is ``2 ** (len(channels) - 1)``.
        blocks: residual blocks per encoder level, an int for all levels or one value per level.
        dropout: spatial dropout probability after each residual block.
        act: activation type and arguments.
        norm: normalisation type and arguments.
        dropout_location: ``"all"``, or ``"decoder"`` to keep the encoder deterministic (cheaper
            Monte-Carlo dropout with :class:`monai_seg.inferers.MCDropoutInferer`).

    Shapes: (B, in_channels, *spatial) -> (B, out_channels, *spatial), spatial sizes divisible by the stride.

    Raises:
        ValueError: for invalid arguments, or at forward time for a spatial size not divisible by the stride.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (16, 32, 64, 128, 128),
        blocks: Sequence[int] | int = (1, 2, 3, 4, 4),
        dropout: float = 0.1,
        act: str | tuple = "relu",
        norm: str | tuple = "batch",
        dropout_location: str = "all",
    ) -> None:
        channels = check_net_args(spatial_dims, in_channels, out_channels, channels, dropout)
        blocks = ensure_sequence(blocks, len(channels), "blocks")
        if any(b < 1 for b in blocks):
            raise ValueError(f"blocks must be >= 1 per level, got {blocks}.")
        encoder_dropout = dropout if check_dropout_location(dropout_location) else 0.0

        def stack(c_in: int, c_out: int, n: int, p: float) -> nn.Sequential:
            layers: list[nn.Module] = []
            for i in range(n):
                layers += [
                    ResidualBlock(spatial_dims, c_in if i == 0 else c_out, c_out, act, norm),
                    dropout_layer(spatial_dims, p, channelwise=True),
                ]
            return nn.Sequential(*layers)

        encoder = nn.ModuleList([stack(in_channels, channels[0], blocks[0], encoder_dropout)])
        for c_in, c_out, n in zip(channels[:-1], channels[1:], blocks[1:]):
            encoder.append(nn.Sequential(Pool[Pool.MAX, spatial_dims](kernel_size=2), stack(c_in, c_out, n, encoder_dropout)))
        decoder = nn.ModuleList(
            DecoderLevel(UpSample(spatial_dims, c_deep, c, scale_factor=2, mode="deconv"), stack(2 * c, c, 1, dropout))
            for c_deep, c in zip(channels[:0:-1], channels[-2::-1])
        )
        super().__init__(encoder, decoder, Conv[Conv.CONV, spatial_dims](channels[0], out_channels, kernel_size=1))
