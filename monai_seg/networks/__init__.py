"""MONAI-style segmentation networks: R2U-Net, ResU-Net and the two-head inception U-Net.

All take ``(spatial_dims, in_channels, out_channels, channels=..., dropout=..., act=..., norm=...)``,
work in 1D/2D/3D, return logits and export to TorchScript. :func:`optimize_for_inference` and
:class:`EvalOptimized` give their fast eval-only versions.
"""

from .base import EncoderDecoderNet
from .blocks import (
    DecoderLevel,
    InceptionBlock,
    RecurrentConv,
    ResidualBlock,
    RRCNNBlock,
    ScaledResidualSkip,
    UpConv,
)
from .inference import (
    EvalOptimized,
    FusedDecoderLevel,
    FusedInceptionBlock,
    FusedScaledResidualSkip,
    max_pool3,
    optimize_for_inference,
)
from .r2unet import R2UNet, RUNet
from .resunet import ResUNet
from .two_head_unet import TwoHeadUNet
from .wrappers import FirstOutput, TemperatureScaled
