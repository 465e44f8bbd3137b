"""``python -m monai_seg.experiments``: see :mod:`monai_seg.experiments.cli`."""

import sys

from monai_seg.experiments.cli import main

if __name__ == "__main__":
    sys.exit(main())
