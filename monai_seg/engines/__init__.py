"""What runs around MONAI's engines rather than on their events: the pre-flight checks before training starts
(the handlers the bundles attach to the engines are in :mod:`monai_seg.handlers`)."""

from .preflight import check_network_input
