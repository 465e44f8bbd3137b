"""Inferers: Monte-Carlo dropout with uncertainty maps and deterministic-prefix sampling."""

from .mc_dropout import (
    ACTIVATIONS,
    DEFAULT_MAPS,
    MCDropoutInferer,
    mc_dropout_mode,
    probability_entropy,
    uncertainty_channels,
    uncertainty_num_classes,
)
from .prefix import DEFAULT_DROPOUT_TYPES, PrefixSplit, active_dropout_modules, split_deterministic_prefix
