"""Two-head inception U-Net of the Kaggle 2016 ultrasound nerve study: a mask and a nerve-presence logit."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution, UpSample
from monai.networks.layers.factories import Conv, Pool
from monai.utils import ensure_tuple_rep

from monai_seg.networks.base import EncoderDecoderNet, check_net_args
from monai_seg.networks.blocks import (
    DecoderLevel,
    InceptionBlock,
    ScaledResidualSkip,
    check_dropout_location,
    dropout_layer,
)

__all__ = ["TwoHeadUNet"]

_PRESENCE_POOLS = {"avg": Pool.ADAPTIVEAVG, "max": Pool.ADAPTIVEMAX}


class TwoHeadUNet(EncoderDecoderNet):
    """U-Net with inception blocks and an image-level presence head on the bottleneck, in 1D/2D/3D.

    Encoder: an :class:`~monai_seg.networks.blocks.InceptionBlock` per level; between levels a 3x3
    stride-2 conv-norm-act and dropout. Skips pass a
    :class:`~monai_seg.networks.blocks.ScaledResidualSkip`. Decoder level: nearest x2 upsampling,
    concatenation with the skip, inception block, dropout. Presence head on the bottleneck: 1x1 conv
    to one channel, adaptive average pooling to ``presence_grid``, flatten, linear to one logit (at
    the study's 80x112 input and ``presence_grid=(5, 7)`` the pooling is the identity, which is the
    reference head exactly; other input sizes work too).

    **Output**: ONE tensor (B, out_channels + 1, *spatial): channels ``[0, out_channels)`` are the
    segmentation logits, the LAST channel is the presence logit, constant over space. One tensor
    keeps every stock MONAI tool working (``SlidingWindowInferer``, ``Activationsd``,
    ``verify_net_in_out``, ``ckpt_export``, MONAI Label). Read the presence logit as the spatial
    mean of the last channel (:func:`monai_seg.losses.split_presence`): under a sliding-window
    inferer that channel becomes the average of the windows' presence logits.

    Parameters with the defaults (1 input channel, 1 output, 2D, ``presence_grid=(5, 7)``):
    1,858,972.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: input channels.
        out_channels: segmentation channels (the output has one more, the presence logit).
        channels: inception features per level, shallowest first, multiples of 16; the last level is
            the bottleneck; the net's stride is ``2 ** (len(channels) - 1)``.
        dropout: dropout probability after each downsampling conv and each decoder inception block.
        act: activation type and arguments (ELU in the study).
        norm: normalisation type and arguments.
        presence_grid: grid the bottleneck's presence map is pooled to before the linear layer,
            an int for every axis or one value per axis.
        presence_pool: ``"avg"`` (the reference head: a position-weighted average of the presence
            map) or ``"max"``; ``presence_pool="max", presence_grid=1`` makes the presence logit
            invariant to where the structure is (an affine function of the map's maximum), which
            generalises better when the structure's position varies between subjects.
        skip_scale: scale of the residual branch in the skip blocks.
        dropout_location: ``"all"``, or ``"decoder"`` to keep the encoder and the presence head
            deterministic (cheaper Monte-Carlo dropout with :class:`monai_seg.inferers.MCDropoutInferer`).

    Shapes: (B, in_channels, *spatial) -> (B, out_channels + 1, *spatial), spatial sizes divisible by the stride.

    Raises:
        ValueError: for invalid arguments, or at forward time for a spatial size not divisible by the stride.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (32, 64, 128, 256, 512),
        dropout: float = 0.5,
        act: str | tuple = "elu",
        norm: str | tuple = "batch",
        presence_grid: Sequence[int] | int = 4,
        presence_pool: str = "avg",
        skip_scale: float = 0.1,
        dropout_location: str = "all",
    ) -> None:
        channels = check_net_args(spatial_dims, in_channels, out_channels, channels, dropout)
        if presence_pool not in _PRESENCE_POOLS:
            raise ValueError(f"presence_pool must be one of {tuple(_PRESENCE_POOLS)}, got {presence_pool!r}.")
        encoder_dropout = dropout if check_dropout_location(dropout_location) else 0.0
        grid = ensure_tuple_rep(presence_grid, spatial_dims)

        encoder = nn.ModuleList([InceptionBlock(spatial_dims, in_channels, channels[0], act, norm)])
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            encoder.append(
                nn.Sequential(
                    Convolution(spatial_dims, c_in, c_in, strides=2, kernel_size=3, act=act, norm=norm),
                    dropout_layer(spatial_dims, encoder_dropout),
                    InceptionBlock(spatial_dims, c_in, c_out, act, norm),
                )
            )
        decoder = nn.ModuleList(
            DecoderLevel(
                UpSample(spatial_dims, scale_factor=2, mode="nontrainable", pre_conv=None, interp_mode="nearest",
                         align_corners=None),
                nn.Sequential(
                    InceptionBlock(spatial_dims, c + c_deep, c, act, norm), dropout_layer(spatial_dims, dropout)
                ),
                ScaledResidualSkip(spatial_dims, c, skip_scale, act, norm),
            )
            for c_deep, c in zip(channels[:0:-1], channels[-2::-1])
        )
        super().__init__(encoder, decoder, Conv[Conv.CONV, spatial_dims](channels[0], out_channels, kernel_size=1))
        self.presence_head = nn.Sequential(
            Conv[Conv.CONV, spatial_dims](channels[-1], 1, kernel_size=1),
            Pool[_PRESENCE_POOLS[presence_pool], spatial_dims](grid),
            nn.Flatten(),
            nn.Linear(math.prod(grid), 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = self.encode(x)
        seg = self.decode(skips)
        presence = self.presence_head(skips[-1])  # (B, 1)
        shape = [presence.shape[0], 1] + [1] * (seg.dim() - 2)
        return torch.cat([seg, presence.reshape(shape).expand_as(seg[:, :1])], dim=1)
