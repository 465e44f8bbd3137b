"""Dataset readers, validation, splits, Kaggle RLE and demo-data generators.

Kaggle 2016 ultrasound nerve segmentation: :func:`nerve_datalist`, :func:`validate_nerve_pairs`,
:func:`nerve_split` (by subject), :func:`make_nerve_demo`, Kaggle RLE and submission files.
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
from .rle import NERVE_IMAGE_SHAPE, read_train_masks_csv, rle_decode, rle_encode, write_submission
