"""Inferers: Monte-Carlo dropout with uncertainty maps, deterministic-prefix sampling, calibrated inference."""

from .calibration import CalibratedInferer, load_temperature, read_calibration, write_calibration
from .mc_dropout import (
    ACTIVATIONS,
    DEFAULT_MAPS,
    MCDropoutInferer,
    mc_dropout_mode,
    uncertainty_channels,
    uncertainty_num_classes,
)
from .prefix import DEFAULT_DROPOUT_TYPES, PrefixSplit, active_dropout_modules, split_deterministic_prefix
