"""Dataset layouts, one reader pipeline, Kaggle RLE and demo-data generators.

Every layout is a short declaration (:class:`~monai_seg.data.layouts.Layout`) registered by name:
``nerve`` (Kaggle 2016 ultrasound nerve, with RLE and submission files), ``brats``, ``isic``, ``drive`` and
``xray``, and for your own data ``decathlon`` (a MONAI datalist JSON) and ``nnunet`` (an nnU-Net raw
dataset). :func:`load_datalist` reads a section of any of them and checks every file, naming the bad
file (or, with ``skip_invalid``, logging and dropping the bad case: :func:`check_cases`);
:func:`load_split` splits by subject or case (never by slice or image) or takes the official sections;
:func:`ensure_demo` writes a deterministic demo dataset in the layout.
"""

from . import brats, drive, generic, isic, nerve, patients, xray
from .brats import (
    BRATS_LABEL_VALUES,
    BRATS_MODALITIES,
    BRATS_REGIONS,
    brats_case_name,
    brats_label_values,
    brats_name_formatter,
    brats_slices,
    regions_to_brats_labels,
)
from .demo import NERVE_DEMO_STYLES, ensure_demo, has_demo, make_demo, make_nerve_test_images, register_demo
from .drive import DRIVE_IMAGE_SHAPE
from .layouts import (
    FileKind,
    Layout,
    Section,
    get_layout,
    group_kfold,
    group_split,
    layout_names,
    load_datalist,
    load_split,
    register_layout,
    validate_datalist,
)
from .rle import NERVE_IMAGE_SHAPE, read_submission, read_train_masks_csv, rle_decode, rle_encode, write_submission
from .validation import check_cases, check_disjoint_ids, check_finite
from .xray import XRAY_CLASSES
