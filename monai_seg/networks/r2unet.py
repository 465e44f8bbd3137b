"""R2U-Net: recurrent residual convolutional U-Net (Alom et al. 2018)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn
from monai.networks.layers.factories import Conv, Pool

from monai_seg.networks.base import EncoderDecoderNet, check_net_args
from monai_seg.networks.blocks import DecoderLevel, RRCNNBlock, UpConv, check_dropout_location, dropout_layer

__all__ = ["R2UNet", "RUNet"]


class R2UNet(EncoderDecoderNet):
    """Recurrent residual U-Net (R2U-Net) in 1D/2D/3D.

    Each level is an :class:`~monai_seg.networks.blocks.RRCNNBlock` (1x1 conv, two recurrent layers
    of one shared conv-norm-act applied ``t + 1`` times, residual add) followed by dropout; levels
    are joined by 2x max-pooling; the decoder upsamples (nearest + conv-norm-act halving channels),
    concatenates the skip and applies an RRCNN block; a 1x1 convolution gives the logits.

    Parameters with the default ``channels=(16, 32, 64, 128, 256)``: 2,447,665 for 3 input channels
    and 1 output channel in 2D (the R2U-Net study's configuration; the widely used PyTorch implementation at
    16 initial features counts 2.45M, see docs/studies.md#the-r2u-net-structure), 2,447,633 for 1 input
    channel; ``t`` does not change the count.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: input channels.
        out_channels: output channels (logits, no activation).
        channels: features per level, shallowest first; the net's stride is ``2 ** (len(channels) - 1)``.
        t: recurrences of each recurrent layer.
        dropout: dropout probability after each RRCNN block (element-wise).
        act: activation type and arguments.
        norm: normalisation type and arguments.
        residual: ``False`` drops the residual add of every block, giving RU-Net.
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
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        t: int = 2,
        dropout: float = 0.1,
        act: str | tuple = "relu",
        norm: str | tuple = "batch",
        residual: bool = True,
        dropout_location: str = "all",
    ) -> None:
        channels = check_net_args(spatial_dims, in_channels, out_channels, channels, dropout)
        encoder_dropout = dropout if check_dropout_location(dropout_location) else 0.0

        def level(c_in: int, c_out: int, p: float) -> nn.Sequential:
            return nn.Sequential(
                RRCNNBlock(spatial_dims, c_in, c_out, t, act, norm, residual), dropout_layer(spatial_dims, p)
            )

        encoder = nn.ModuleList([level(in_channels, channels[0], encoder_dropout)])
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            encoder.append(nn.Sequential(Pool[Pool.MAX, spatial_dims](kernel_size=2), level(c_in, c_out, encoder_dropout)))
        decoder = nn.ModuleList(
            DecoderLevel(UpConv(spatial_dims, c_deep, c, act, norm), level(2 * c, c, dropout))
            for c_deep, c in zip(channels[:0:-1], channels[-2::-1])
        )
        super().__init__(encoder, decoder, Conv[Conv.CONV, spatial_dims](channels[0], out_channels, kernel_size=1))


class RUNet(R2UNet):
    """Recurrent U-Net (RU-Net): :class:`R2UNet` without the residual add; same arguments otherwise."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__(spatial_dims, in_channels, out_channels, residual=False, **kwargs)
