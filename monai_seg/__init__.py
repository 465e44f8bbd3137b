"""monai-seg: MONAI networks, inferers, metrics and bundles for segmentation with uncertainty.

Importing the package imports its subpackages, so that bundle configs can reference any
component by its full dotted path (``monai_seg.networks.R2UNet``). It has no other effect: in
particular the plotting backend of matplotlib stays the user's (figures are drawn outside pyplot).

The modules form layers, from low to high; a module imports only from its own layer or from lower ones
(``tests/test_layering.py`` reads the line below and checks every import of the package against it):

    utils -> data, networks, losses -> inferers -> metrics -> transforms -> visualize -> handlers -> engines
    -> experiments, export, pins, calibrate, cli

- ``utils``: file-system helpers (atomic writes, the guard against overwriting results) and process settings;
- ``data``: dataset readers, validation, splits, demo data; ``networks``, ``losses``: the models and their losses;
- ``inferers``: Monte-Carlo dropout with uncertainty maps; ``metrics``: metric functions and MONAI
  ``Cumulative`` metrics; ``transforms``: the transforms the bundles add to MONAI's;
- ``visualize``: the figures; ``handlers``: the Ignite handlers the bundles attach to MONAI's engines;
  ``engines``: the checks run before an engine starts;
- ``experiments``, ``export``, ``pins``, ``calibrate``, ``cli``: the command-line tools built on all of the above
  (``pins`` writes the version pins of the bundles' metadata from the installed environment, ``calibrate`` fits
  a bundle's temperature scaling).
"""

from . import data, engines, handlers, inferers, losses, metrics, networks, transforms, utils, visualize

__version__ = "0.1.0"
