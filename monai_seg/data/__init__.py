"""Dataset readers, validation, splits, Kaggle RLE and demo-data generators.

Each real layout has a reader (``*_datalist``), a validation pass that names the bad file (or, with
``skip_invalid``, logs and drops the bad case: :func:`check_cases`), a split
(by subject/case, never by slice or image) and a deterministic demo generator in the same layout:
Kaggle 2016 ultrasound nerve (with RLE and submission files), BraTS, ISIC, DRIVE and X-ray folders.
"""

from .brats import (
    BRATS_LABEL_VALUES,
    BRATS_MODALITIES,
    BRATS_REGIONS,
    brats_case_name,
    brats_datalist,
    brats_label_values,
    brats_name_formatter,
    brats_slices,
    brats_split,
    ensure_brats_demo,
    make_brats_demo,
    regions_to_brats_labels,
    validate_brats,
)
from .drive import (
    DRIVE_IMAGE_SHAPE,
    drive_datalist,
    drive_split,
    ensure_drive_demo,
    make_drive_demo,
    validate_drive_pairs,
)
from .isic import ensure_isic_demo, isic_datalist, isic_split, make_isic_demo, validate_isic_pairs
from .nerve import (
    ensure_nerve_demo,
    make_nerve_demo,
    make_nerve_test_images,
    nerve_datalist,
    nerve_split,
    subject_kfold,
    subject_split,
    validate_nerve_pairs,
)
from .rle import NERVE_IMAGE_SHAPE, read_submission, read_train_masks_csv, rle_decode, rle_encode, write_submission
from .validation import check_cases, check_disjoint_ids, check_finite
from .xray import (
    XRAY_CLASSES,
    ensure_xray_demo,
    make_xray_demo,
    validate_xray_pairs,
    xray_datalist,
    xray_split,
)
