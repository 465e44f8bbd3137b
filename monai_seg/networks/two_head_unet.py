"""Two-head inception U-Net of the Kaggle 2016 ultrasound nerve study: a mask and a nerve-presence logit.

The solution it follows, and the study's settings: docs/studies.md#the-two-head-solution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution, UpSample
from monai.networks.layers.factories import Conv, Pool
from monai.utils import ensure_tuple_rep

from monai_seg.networks.base import EncoderDecoderNet, check_net_args
from monai_seg.networks.blocks import DecoderLevel, InceptionBlock, ScaledResidualSkip, dropout_layer

__all__ = ["TwoHeadUNet", "TWO_HEAD_DROPOUT_LOCATIONS"]

_PRESENCE_POOLS = {"avg": Pool.ADAPTIVEAVG, "max": Pool.ADAPTIVEMAX}
TWO_HEAD_DROPOUT_LOCATIONS = ("heads", "decoder", "all")
"""Where :class:`TwoHeadUNet` puts its dropout layers (see its ``dropout_location``)."""


class TwoHeadUNet(EncoderDecoderNet):
    """U-Net with inception blocks and an image-level presence head on the bottleneck, in 1D/2D/3D.

    Encoder: an :class:`~monai_seg.networks.blocks.InceptionBlock` per level; between levels a 3x3
    stride-2 conv-norm-act. Skips pass a :class:`~monai_seg.networks.blocks.ScaledResidualSkip`.
    Decoder level: nearest x2 upsampling, concatenation with the skip, inception block. Segmentation
    head: 1x1 conv. Presence head on the bottleneck: 1x1 conv to ``presence_features`` maps, adaptive
    pooling to ``presence_grid``, flatten, linear to one logit (with ``presence_features=1``,
    ``presence_pool="avg"`` and ``presence_grid=(7, 5)`` at the study's 80x112 (H x W) input, 112x80 in
    MONAI's W x H order, the pooling is the identity: the solution's head exactly).

    Dropout (``dropout_location``): the study put dropout 0.5 after every downsampling conv and every
    decoder block ("all"); each of those layers feeds a BatchNorm, whose running statistics are then
    gathered on dropped-out activations and do not fit the activations of evaluation, when dropout is
    off (the variance shift of Li et al., CVPR 2019). Trained on small data, such a net can segment well in
    training mode and predict nothing in evaluation mode. ``"heads"`` (the default) puts the dropout
    only after the last normalisation: before the segmentation head's 1x1 conv and before the presence
    head's linear layer (after its pooling: dropout before a max-pool would raise the maximum in
    training only), so no BatchNorm ever sees dropped-out activations; Monte-Carlo dropout then
    samples both heads (and :class:`monai_seg.inferers.MCDropoutInferer` runs the rest of the net once).

    **Output**: ONE tensor (B, out_channels + 1, *spatial): channels ``[0, out_channels)`` are the
    segmentation logits, the LAST channel is the presence logit, constant over space. One tensor
    keeps every stock MONAI tool working (``SlidingWindowInferer``, ``Activationsd``,
    ``verify_net_in_out``, ``ckpt_export``, MONAI Label). Read the presence logit as the spatial
    mean of the last channel (:func:`monai_seg.losses.split_presence`): under a sliding-window
    inferer that channel becomes the average of the windows' presence logits.

    Parameters with the defaults (1 input channel, 1 output, 2D; ``presence_features=16,
    presence_pool="max", presence_grid=1``): 1,866,648; with the study's head (``presence_features=1,
    presence_pool="avg", presence_grid=(7, 5)``, as the nerve bundle's ``configs/study.json``): 1,858,972.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: input channels.
        out_channels: segmentation channels (the output has one more, the presence logit).
        channels: inception features per level, shallowest first, multiples of 16; the last level is
            the bottleneck; the net's stride is ``2 ** (len(channels) - 1)``.
        dropout: dropout probability of the dropout layers (see ``dropout_location``).
        act: activation type and arguments (ELU in the study).
        norm: normalisation type and arguments; BatchNorm is the study's, the nerve bundle uses
            ``("instance", {"affine": True})`` (per-image statistics, the same in training and
            evaluation; see docs/networks.md).
        presence_features: maps of the presence head's 1x1 conv (1 in the study); the linear layer
            combines their pooled values.
        presence_grid: grid the bottleneck's presence maps are pooled to before the linear layer,
            an int for every axis or one value per axis.
        presence_pool: ``"avg"`` (the solution's head: a position-weighted average of the presence
            map) or ``"max"``; ``presence_pool="max", presence_grid=1`` makes the presence logit
            invariant to where the structure is (an affine function of the map's maximum), which
            generalises better when the structure's position varies between subjects.
        skip_scale: scale of the residual branch in the skip blocks.
        dropout_location: ``"heads"``: only before the two heads (no variance shift); ``"decoder"``: after
            each decoder inception block (the encoder and the presence head stay deterministic);
            ``"all"``: also after each downsampling conv, the study's net.
        prior: initial foreground probability of the segmentation head: its bias starts at
            ``log(prior / (1 - prior))`` (the prior initialisation of Lin et al., ICCV 2017), so the
            untrained net predicts little foreground, as most pixels need, and the Dice loss works on the
            foreground from the first step instead of first pushing every pixel down from 0.5 (on
            the demo data the training loss falls below 1.0 five epochs earlier). None keeps
            PyTorch's initialisation.

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
        presence_features: int = 16,
        presence_grid: Sequence[int] | int = 1,
        presence_pool: str = "max",
        skip_scale: float = 0.1,
        dropout_location: str = "heads",
        prior: float | None = 0.05,
    ) -> None:
        channels = check_net_args(spatial_dims, in_channels, out_channels, channels, dropout)
        if presence_pool not in _PRESENCE_POOLS:
            raise ValueError(f"presence_pool must be one of {tuple(_PRESENCE_POOLS)}, got {presence_pool!r}.")
        if presence_features < 1:
            raise ValueError(f"presence_features must be at least 1, got {presence_features}.")
        if prior is not None and not 0.0 < prior < 1.0:
            raise ValueError(f"prior must be a probability in (0, 1), got {prior}.")
        if dropout_location not in TWO_HEAD_DROPOUT_LOCATIONS:
            raise ValueError(f"dropout_location must be one of {TWO_HEAD_DROPOUT_LOCATIONS}, got {dropout_location!r}.")
        level = TWO_HEAD_DROPOUT_LOCATIONS.index(dropout_location)  # heads 0 < decoder 1 < all 2
        encoder_dropout, decoder_dropout = dropout * (level == 2), dropout * (level >= 1)
        head_dropout = dropout * (level == 0)
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
                    InceptionBlock(spatial_dims, c + c_deep, c, act, norm), dropout_layer(spatial_dims, decoder_dropout)
                ),
                ScaledResidualSkip(spatial_dims, c, skip_scale, act, norm),
            )
            for c_deep, c in zip(channels[:0:-1], channels[-2::-1])
        )
        head = nn.Sequential(
            dropout_layer(spatial_dims, head_dropout), Conv[Conv.CONV, spatial_dims](channels[0], out_channels, 1)
        )
        if prior is not None:
            nn.init.constant_(head[1].bias, math.log(prior / (1.0 - prior)))
        super().__init__(encoder, decoder, head)
        self.presence_head = nn.Sequential(
            Conv[Conv.CONV, spatial_dims](channels[-1], presence_features, kernel_size=1),
            Pool[_PRESENCE_POOLS[presence_pool], spatial_dims](grid),
            nn.Flatten(),
            dropout_layer(spatial_dims, head_dropout),
            nn.Linear(presence_features * math.prod(grid), 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = self.encode(x)
        seg = self.decode(skips)
        presence = self.presence_head(skips[-1])  # (B, 1)
        shape = [presence.shape[0], 1] + [1] * (seg.dim() - 2)
        return torch.cat([seg, presence.reshape(shape).expand_as(seg[:, :1])], dim=1)
