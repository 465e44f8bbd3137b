"""Inferers: Monte-Carlo dropout with uncertainty maps, deterministic-prefix sampling, test-time augmentation and
calibrated inference."""

from .calibration import CalibratedInferer, load_temperature, read_calibration, write_calibration
from .mc_dropout import (
    ACTIVATIONS,
    DEFAULT_MAPS,
    MAP_NAMES,
    MCDropoutInferer,
    mc_dropout_mode,
    probability_entropy,
    uncertainty_channels,
    uncertainty_num_classes,
)
from .prefix import DEFAULT_DROPOUT_TYPES, PrefixSplit, active_dropout_modules, split_deterministic_prefix
from .tta import (
    TTA_MAPS,
    AffineAugmentation,
    FlipAugmentation,
    IdentityAugmentation,
    InvertibleAugmentation,
    TTAMCDropoutInferer,
)
