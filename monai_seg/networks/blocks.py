"""Building blocks shared by the monai-seg networks.

Every block is dimension-agnostic (``spatial_dims`` first) and built from MONAI's layer
factories and :class:`monai.networks.blocks.Convolution`, so each net works in 2D and 3D.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution, UpSample
from monai.networks.layers.factories import Conv, Dropout, Pool
from monai.networks.layers.utils import get_act_layer, get_norm_layer

__all__ = [
    "DROPOUT_LOCATIONS",
    "DecoderLevel",
    "InceptionBlock",
    "RecurrentConv",
    "ResidualBlock",
    "RRCNNBlock",
    "ScaledResidualSkip",
    "UpConv",
    "check_dropout_location",
    "check_spatial_size",
    "dropout_layer",
    "ensure_sequence",
]

DROPOUT_LOCATIONS = ("all", "decoder")


def check_dropout_location(dropout_location: str) -> bool:
    """Validate ``dropout_location`` and return whether the encoder gets dropout.

    Args:
        dropout_location: ``"all"`` (encoder and decoder) or ``"decoder"`` (decoder only, which lets
            :class:`monai_seg.inferers.MCDropoutInferer` compute the encoder once per image).

    Raises:
        ValueError: for any other value.
    """
    if dropout_location not in DROPOUT_LOCATIONS:
        raise ValueError(f"dropout_location must be one of {DROPOUT_LOCATIONS}, got {dropout_location!r}.")
    return dropout_location == "all"


def ensure_sequence(value: Sequence[int] | int, length: int, name: str) -> tuple[int, ...]:
    """Expand an int to ``length`` copies, or check that a sequence has ``length`` items.

    Raises:
        ValueError: when a sequence of another length is given.
    """
    if isinstance(value, int):
        return (value,) * length
    value = tuple(value)
    if len(value) != length:
        raise ValueError(f"{name} needs {length} values (one per level), got {len(value)}: {value}.")
    return value


def dropout_layer(spatial_dims: int, p: float, channelwise: bool = False) -> nn.Module:
    """Dropout with probability ``p``; channel-wise (spatial dropout) when ``channelwise``.

    Returns ``nn.Identity`` when ``p == 0`` so the weight keys are the same with and without dropout.
    """
    if p <= 0.0:
        return nn.Identity()
    return Dropout[Dropout.DROPOUT, spatial_dims if channelwise else 1](p)


def check_spatial_size(x: torch.Tensor, stride: int) -> None:
    """Raise a ``ValueError`` unless every spatial size of ``x`` (B, C, *spatial) divides by ``stride``.

    TorchScript-compatible so exported nets keep the check.
    """
    for size in x.shape[2:]:
        if size % stride != 0:
            raise ValueError(
                "spatial size "
                + str(list(x.shape[2:]))
                + " is not divisible by the net's total stride "
                + str(stride)
                + "; pad or resize the input (e.g. monai.transforms.DivisiblePadd(k="
                + str(stride)
                + "))."
            )


class ResidualBlock(nn.Module):
    """Residual block ``act(bn(conv(act(bn(conv(x))))) + shortcut(x))`` (He et al. 2016).

    The shortcut is a 1x1 convolution when the channel count changes, identity otherwise.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: input channels.
        out_channels: output channels.
        act: activation type and arguments.
        norm: normalisation type and arguments.
        kernel_size: convolution kernel size.

    Shapes: (B, in_channels, *spatial) -> (B, out_channels, *spatial).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        act: str | tuple = "relu",
        norm: str | tuple = "batch",
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.conv1 = Convolution(spatial_dims, in_channels, out_channels, kernel_size=kernel_size, act=act, norm=norm)
        self.conv2 = Convolution(spatial_dims, out_channels, out_channels, kernel_size=kernel_size, act=None, norm=norm)
        self.shortcut: nn.Module = (
            Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=1)
            if in_channels != out_channels
            else nn.Identity()
        )
        self.act = get_act_layer(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class RecurrentConv(nn.Module):
    """Recurrent convolutional layer of R2U-Net (Alom et al. 2018; docs/studies.md#the-r2u-net-structure).

    ONE conv-norm-act (shared weights) is applied ``t + 1`` times:
    ``h = f(x); repeat t times: h = f(x + h)``. ``t`` does not change the parameter count.

    Args:
        spatial_dims: number of spatial dimensions.
        channels: input and output channels.
        t: number of recurrences (``t=0`` is a plain conv-norm-act).
        act: activation type and arguments.
        norm: normalisation type and arguments.

    Shapes: (B, channels, *spatial) -> (B, channels, *spatial).
    """

    def __init__(
        self, spatial_dims: int, channels: int, t: int = 2, act: str | tuple = "relu", norm: str | tuple = "batch"
    ) -> None:
        super().__init__()
        if t < 0:
            raise ValueError(f"t (number of recurrences) must be >= 0, got {t}.")
        self.t = t
        self.conv = Convolution(spatial_dims, channels, channels, kernel_size=3, act=act, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        for _ in range(self.t):
            h = self.conv(x + h)
        return h


class RRCNNBlock(nn.Module):
    """Recurrent residual convolutional unit of R2U-Net.

    A 1x1 convolution maps ``in_channels`` to ``out_channels``; two :class:`RecurrentConv` layers
    follow; with ``residual=True`` (R2U-Net) the 1x1 output is added to their output, with
    ``residual=False`` (RU-Net) it is not.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: input channels.
        out_channels: output channels.
        t: recurrences of each recurrent layer.
        act: activation type and arguments.
        norm: normalisation type and arguments.
        residual: add the 1x1-convolution path to the output.

    Shapes: (B, in_channels, *spatial) -> (B, out_channels, *spatial).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        t: int = 2,
        act: str | tuple = "relu",
        norm: str | tuple = "batch",
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.residual = residual
        self.conv1x1 = Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=1)
        self.recurrent = nn.Sequential(
            RecurrentConv(spatial_dims, out_channels, t, act, norm),
            RecurrentConv(spatial_dims, out_channels, t, act, norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1x1(x)
        out = self.recurrent(x)
        if self.residual:
            out = out + x
        return out


class UpConv(nn.Sequential):
    """Nearest-neighbour x2 upsampling followed by conv-norm-act (the R2U-Net / U-Net decoder step).

    Shapes: (B, in_channels, *spatial) -> (B, out_channels, *2 x spatial).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        act: str | tuple = "relu",
        norm: str | tuple = "batch",
    ) -> None:
        super().__init__(
            UpSample(spatial_dims, scale_factor=2, mode="nontrainable", pre_conv=None, interp_mode="nearest",
                     align_corners=None),
            Convolution(spatial_dims, in_channels, out_channels, kernel_size=3, act=act, norm=norm),
        )


class InceptionBlock(nn.Module):
    """Inception block of the two-head Kaggle nerve U-Net (the 0.694 single-model solution,
    docs/studies.md#the-two-head-solution), generalised to N-D.

    Four parallel branches whose outputs are concatenated (``d = out_channels``):

    - 1x1 conv to ``d/4``;
    - 1x1 conv-act to ``3d/8``, then factorised 3-convs (1x3 then 3x1 in 2D, one axis at a time) to ``d/2``;
    - 1x1 conv-act to ``d/16``, then factorised 5-convs to ``d/8``;
    - 3x3 max-pool (stride 1) then 1x1 conv to ``d/8``;

    followed by normalisation and activation. Inner convolutions of a branch are conv-norm-act.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: input channels.
        out_channels: output channels ``d``, a multiple of 16.
        act: activation type and arguments.
        norm: normalisation type and arguments.

    Shapes: (B, in_channels, *spatial) -> (B, out_channels, *spatial).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        act: str | tuple = "elu",
        norm: str | tuple = "batch",
    ) -> None:
        super().__init__()
        if out_channels % 16 != 0:
            raise ValueError(f"InceptionBlock out_channels must be a multiple of 16, got {out_channels}.")
        d = out_channels
        # the 1x1 convs opening the first three branches run as ONE conv (same weights count, one
        # pass over the input instead of three), split into d/4 | 3d/8 | d/16 channels
        self.splits = [d // 4, 3 * d // 8, d // 16]
        self.reduce = Conv[Conv.CONV, spatial_dims](in_channels, sum(self.splits), kernel_size=1)
        self.reduce_act = get_act_layer(act)
        self.branch3 = self._factorised(spatial_dims, 3 * d // 8, d // 2, 3, act, norm)
        self.branch5 = self._factorised(spatial_dims, d // 16, d // 8, 5, act, norm)
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=3, stride=1, padding=1)
        self.pool_conv = Conv[Conv.CONV, spatial_dims](in_channels, d // 8, kernel_size=1)
        self.norm = get_norm_layer(norm, spatial_dims, d)
        self.act = get_act_layer(act)

    def branch_pool(self, x: torch.Tensor) -> torch.Tensor:
        """3x3 max-pool (stride 1) then 1x1 conv.

        On CPU the 2D pool runs in channels-last layout: PyTorch's NCHW CPU max-pool is ~2.5x
        slower there (measured: 102 ms vs 39 ms forward+backward on 8x96x80x112, see
        docs/benchmarks.md); the result is identical.
        """
        if x.dim() == 4 and not x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.pool_conv(self.pool(x))

    @staticmethod
    def _factorised(
        spatial_dims: int, in_channels: int, out_channels: int, k: int, act: str | tuple, norm: str | tuple
    ) -> nn.Sequential:
        """One size-``k`` conv per spatial axis, last axis first (1xk then kx1 in 2D); inner ones conv-norm-act."""
        layers: list[nn.Module] = []
        channels = in_channels
        for axis in reversed(range(spatial_dims)):
            kernel = [1] * spatial_dims
            kernel[axis] = k
            layers.append(
                Convolution(spatial_dims, channels, out_channels, kernel_size=kernel, act=act, norm=norm,
                            conv_only=axis == 0)
            )
            channels = out_channels
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(x)
        branch1 = reduced[:, : self.splits[0]]
        mid3, mid5 = torch.split(self.reduce_act(reduced[:, self.splits[0] :]), self.splits[1:], dim=1)
        out = torch.cat([branch1, self.branch3(mid3), self.branch5(mid5), self.branch_pool(x)], dim=1)
        return self.act(self.norm(out))


class ScaledResidualSkip(nn.Module):
    """Skip-connection block of the two-head U-Net: ``act(x + scale * norm(conv1x1(x)))``.

    Shapes: (B, channels, *spatial) -> (B, channels, *spatial).
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        scale: float = 0.1,
        act: str | tuple = "elu",
        norm: str | tuple = "batch",
    ) -> None:
        super().__init__()
        self.scale = scale
        self.conv = Convolution(spatial_dims, channels, channels, kernel_size=1, act=None, norm=norm)
        self.act = get_act_layer(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.scale * self.conv(x))


class DecoderLevel(nn.Module):
    """One decoder step: ``block(cat([skip_block(skip), up(x)]))``.

    Args:
        up: upsamples the deeper features ``x`` to the skip's spatial size.
        block: processes the concatenation (skip channels first).
        skip_block: transforms the skip features first (identity by default).

    Shapes: x (B, C_deep, *spatial / 2), skip (B, C_skip, *spatial) -> (B, C_out, *spatial).
    """

    def __init__(self, up: nn.Module, block: nn.Module, skip_block: nn.Module | None = None) -> None:
        super().__init__()
        self.up = up
        self.skip_block = skip_block if skip_block is not None else nn.Identity()
        self.block = block

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.skip_block(skip), self.up(x)], dim=1))
