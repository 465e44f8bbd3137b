"""monai-seg: MONAI networks, inferers, metrics and bundles for segmentation with uncertainty.

Importing the package imports its subpackages, so that bundle configs can reference any
component by its full dotted path (``monai_seg.networks.R2UNet``).
"""

from . import data, engines, inferers, losses, metrics, networks, transforms, visualize

__version__ = "0.1.0"
