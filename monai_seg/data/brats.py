"""BraTS brain-tumour MRI data: reader, validation, case-wise splits, 2D slice extraction and a
synthetic demo dataset with the same layout.

Layout (``dataset_dir``), one folder per case (BraTS 2019-2021)::

    <case>/<case>_flair.nii.gz   FLAIR
    <case>/<case>_t1.nii.gz      T1
    <case>/<case>_t1ce.nii.gz    T1 with contrast (gadolinium)
    <case>/<case>_t2.nii.gz      T2
    <case>/<case>_seg.nii.gz     labels: 0 background, 1 necrotic / non-enhancing core, 2 edema, 4 enhancing

The four modalities are stacked as image channels in the order of :data:`BRATS_MODALITIES`
(FLAIR, T1, T1ce, T2); ``LoadImaged`` with the datalist's list of four files does the stacking.
BraTS 2023 uses 3 for the enhancing tumour (``label_convention="2023"``) and other file names,
``<case>/<case>-{t2f,t1n,t1c,t2w,seg}.nii.gz`` (``modalities=("t2f", "t1n", "t1c", "t2w"),
separator="-"``, the same channel order).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.data.utils import no_collation
from monai.transforms import Transform
from monai.utils import ImageMetaKey, optional_import
from scipy import ndimage

from .validation import check_cases, check_finite

tqdm, has_tqdm = optional_import("tqdm", name="tqdm")

__all__ = [
    "BRATS_MODALITIES",
    "BRATS_LABEL_VALUES",
    "BRATS_REGIONS",
    "brats_label_values",
    "brats_datalist",
    "validate_brats",
    "brats_split",
    "brats_case_name",
    "brats_name_formatter",
    "brats_slices",
    "regions_to_brats_labels",
    "make_brats_demo",
    "ensure_brats_demo",
]

BRATS_MODALITIES: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")
"""File suffixes of the image channels, in channel order."""

BRATS_LABEL_VALUES: dict[str, tuple[int, int, int, int]] = {"2019": (0, 1, 2, 4), "2023": (0, 1, 2, 3)}
"""Label values (background, necrotic core, edema, enhancing tumour) of each convention; 2019 also
covers 2020 and 2021."""

BRATS_REGIONS: tuple[str, ...] = ("TC", "WT", "ET")
"""Channels of MONAI's ``ConvertToMultiChannelBasedOnBratsClassesd``: tumour core {1, 4}, whole
tumour {1, 2, 4}, enhancing tumour {4} (2019 values)."""

_NIFTI_EXT = ".nii.gz"
_AFFINE_TOLERANCE = 1e-3  # mm: BraTS modalities are co-registered to the same grid


def brats_label_values(label_convention: str = "2019") -> tuple[int, int, int, int]:
    """Label values (background, necrotic core, edema, enhancing) of ``label_convention``.

    For bundle configs, e.g. ``ConvertToMultiChannelBasedOnBratsClassesd(et_label=brats_label_values(c)[3])``
    and ``regions_to_brats_labels(x, enhancing_label=brats_label_values(c)[3])``.

    Raises:
        ValueError: for an unknown convention.
    """
    if label_convention not in BRATS_LABEL_VALUES:
        raise ValueError(f"label_convention must be one of {sorted(BRATS_LABEL_VALUES)}, got {label_convention!r}.")
    return BRATS_LABEL_VALUES[label_convention]


# ----------------------------------------------------------------------------------------------
# reader and validation
# ----------------------------------------------------------------------------------------------


def brats_datalist(
    dataset_dir: str | os.PathLike,
    modalities: Sequence[str] = BRATS_MODALITIES,
    label: str = "required",
    label_suffix: str = "seg",
    separator: str = "_",
    skip_invalid: bool | str = False,
) -> Sequence[dict]:
    """Scan a BraTS dataset folder (see the module docstring) into a MONAI datalist.

    Only file names are checked here; :func:`validate_brats` opens the files.

    Args:
        dataset_dir: folder holding one sub-folder per case; hidden entries and files are ignored.
        modalities: file suffixes of the image channels, in channel order.
        label: ``"required"`` (every case has ``<case><separator><label_suffix>.nii.gz``), ``"optional"``
            (listed where present, e.g. for inference) or ``"none"`` (never listed).
        label_suffix: file suffix of the label map.
        separator: between the case and the suffix, ``"_"`` (2019-2021) or ``"-"`` (2023).
        skip_invalid: log and drop a case with a missing modality (or label) instead of raising.

    Returns:
        ``[{"image": [one path per modality], "label": path, "case": name}]`` sorted by case name.

    Raises:
        ValueError: naming the folder or file for a missing or empty dataset folder, a missing
            modality, or a missing label when required; for an unknown ``label`` option.
    """
    if label not in ("required", "optional", "none"):
        raise ValueError(f"label must be 'required', 'optional' or 'none', got {label!r}.")
    dataset_dir = os.fspath(dataset_dir)
    if not os.path.isdir(dataset_dir):
        raise ValueError(f"BraTS dataset folder {dataset_dir} does not exist.")
    cases = sorted(e.name for e in os.scandir(dataset_dir) if e.is_dir() and not e.name.startswith("."))
    if not cases:
        raise ValueError(f"BraTS dataset folder {dataset_dir} has no case folders.")
    datalist = []
    for case in cases:
        folder = os.path.join(dataset_dir, case)
        images = [os.path.join(folder, f"{case}{separator}{m}{_NIFTI_EXT}") for m in modalities]
        item: dict[str, Any] = {"image": images}
        label_path = os.path.join(folder, f"{case}{separator}{label_suffix}{_NIFTI_EXT}")
        if label == "required" or (label == "optional" and os.path.isfile(label_path)):
            item["label"] = label_path
        item["case"] = case
        datalist.append(item)
    return check_cases(datalist, _check_case_files, f"BraTS {dataset_dir}", skip_invalid, progress=False)


def _check_case_files(item: Mapping) -> None:
    """ValueError naming the file when a modality or the label of a :func:`brats_datalist` item is missing."""
    for path in item["image"]:
        if not os.path.isfile(path):
            raise ValueError(f"Case {item['case']} has no modality file {path}.")
    if "label" in item and not os.path.isfile(item["label"]):
        raise ValueError(f"Case {item['case']} has no label file {item['label']}.")


def _read_volume(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(voxels, affine) of a NIfTI file.

    Raises:
        ValueError: naming the file when it is unreadable or truncated, not 3D, or holds NaN or
            infinite values.
    """
    try:
        image = nib.load(path)
        shape, affine = tuple(int(s) for s in image.shape), np.asarray(image.affine)
        if len(shape) == 3:
            data = np.asanyarray(image.dataobj)
    except Exception as err:
        raise ValueError(f"Cannot read NIfTI {path}: {err}") from err
    if len(shape) != 3:
        raise ValueError(f"{path} is not a 3D volume: shape {shape}.")
    if data.dtype.kind == "f":
        check_finite(path, data)
    return data, affine


def _validate_case(item: Mapping, label_values: Sequence[int]) -> None:
    """Check one datalist item: finite 3D volumes on one grid, label values within ``label_values``."""
    paths = list(item["image"]) + ([item["label"]] if "label" in item else [])
    reference = paths[0]
    ref_data, ref_affine = _read_volume(reference)
    ref_shape = ref_data.shape
    for path in paths[1:]:
        data, affine = _read_volume(path)
        shape = data.shape
        if shape != ref_shape:
            raise ValueError(f"{path} has shape {shape} but {reference} has shape {ref_shape}.")
        if not np.allclose(affine, ref_affine, atol=_AFFINE_TOLERANCE):
            raise ValueError(
                f"{path} is not on the grid of {reference}: affines\n{affine}\nand\n{ref_affine}\ndiffer."
            )
    if "label" in item:
        values = np.unique(data)  # the label is the last file read
        unexpected = sorted(set(values.tolist()) - set(label_values))
        if unexpected:
            raise ValueError(
                f"Label {item['label']} has values {unexpected} outside the convention {tuple(label_values)}."
            )


def validate_brats(
    datalist: Sequence[Mapping],
    label_convention: str = "2019",
    progress: bool | None = None,
    skip_invalid: bool | str = False,
    failures_csv: str | os.PathLike | None = None,
) -> Sequence:
    """Read every file of a BraTS datalist and check it.

    Images and label: complete 3D NIfTI volumes of one shape and affine, without NaN or infinite
    values; label: values within the convention.

    Args:
        datalist: output of :func:`brats_datalist`.
        label_convention: ``"2019"`` (values 0, 1, 2, 4; also 2020/2021) or ``"2023"`` (0, 1, 2, 3).
        progress: show a tqdm progress bar; None: for large datalists.
        skip_invalid: log and drop a bad case instead of raising; the log reports how many were
            skipped (:func:`monai_seg.data.validation.check_cases`).
        failures_csv: with ``skip_invalid``, write the dropped cases to this CSV (``file,error``).

    Returns:
        ``datalist`` itself when every case passes (so that the call can be chained in a bundle
        config), otherwise the good cases.

    Raises:
        ValueError: naming the file for an unreadable, truncated or non-3D volume, NaN or infinite
            values, a shape or affine that differs from the case's first modality, or label values
            outside the convention.
    """
    label_values = brats_label_values(label_convention)
    check = partial(_validate_case, label_values=label_values)
    return check_cases(datalist, check, "BraTS", skip_invalid, progress, failures_csv)


def brats_split(
    dataset_dir: str | os.PathLike,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    validate: bool = True,
    label_convention: str = "2019",
    modalities: Sequence[str] = BRATS_MODALITIES,
    separator: str = "_",
    skip_invalid: bool | str = False,
) -> dict[str, list[dict]]:
    """Training, validation and test datalists of a BraTS dataset, split by case.

    The cases are shuffled with ``seed``; the first ``round(n * test_fraction)`` go to test, the next
    ``round(n * val_fraction)`` to validation (at least one each when the fraction is positive), the
    rest to training. The split depends only on the case names, the fractions and the seed, so
    ``train.json`` and ``evaluate.json`` compute the same one.

    Args:
        dataset_dir: BraTS dataset folder (labels required).
        val_fraction: fraction of the cases used for validation, in [0, 1).
        test_fraction: fraction of the cases held out for testing, in [0, 1).
        seed: seed of the case shuffle.
        validate: open and check every file first (:func:`validate_brats`).
        label_convention: see :func:`validate_brats`.
        modalities: see :func:`brats_datalist`.
        separator: see :func:`brats_datalist`.
        skip_invalid: log and drop a bad case instead of raising; the log reports how many were
            skipped (:func:`monai_seg.data.validation.check_cases`).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each sorted by case name.

    Raises:
        ValueError: for fractions outside [0, 1), no case left for training, and see
            :func:`brats_datalist` and :func:`validate_brats`.
    """
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= fraction < 1:
            raise ValueError(f"{name} must be in [0, 1), got {fraction}.")
    datalist = brats_datalist(dataset_dir, modalities, separator=separator, skip_invalid=skip_invalid)
    if validate:
        datalist = validate_brats(datalist, label_convention, skip_invalid=skip_invalid)
    n = len(datalist)
    num_test, num_val = (max(round(n * f), 1) if f > 0 else 0 for f in (test_fraction, val_fraction))
    if num_test + num_val >= n:
        raise ValueError(f"{n} cases leave none for training with {num_val} validation and {num_test} test cases.")
    order = np.random.default_rng(seed).permutation(n)
    parts = {
        "test": order[:num_test],
        "val": order[num_test : num_test + num_val],
        "train": order[num_test + num_val :],
    }
    return {name: [datalist[i] for i in sorted(indices)] for name, indices in parts.items()}


def brats_case_name(path: str | os.PathLike) -> str:
    """The case of a BraTS file: ``<case>/<case>_flair.nii.gz`` (or ``<case>/<case>-t2f.nii.gz``) ->
    ``<case>``; another file's name without its extension (e.g. a stacked 4D volume ``<case>.nii.gz``
    given to MONAI Label)."""
    path = os.fspath(path)
    folder, name = os.path.basename(os.path.dirname(path)), os.path.basename(path)
    if folder and name.startswith(folder) and name[len(folder) : len(folder) + 1] in ("_", "-"):
        return folder
    for ext in (_NIFTI_EXT, ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return os.path.splitext(name)[0]


def brats_name_formatter(metadict: Mapping | None, saver: Transform) -> dict:
    """``SaveImaged(output_name_formatter=...)``: name outputs after the case, ``<case>_<postfix>.nii.gz``.

    Args:
        metadict: meta data of the saved tensor; its ``filename_or_obj`` is the first modality file.
        saver: the ``SaveImage`` transform (its running index names data without a file name).
    """
    source = (metadict or {}).get(ImageMetaKey.FILENAME_OR_OBJ)
    subject = brats_case_name(source) if source else f"{getattr(saver, '_data_index', 0)}"
    return {"subject": subject, "idx": None}


# ----------------------------------------------------------------------------------------------
# 2D slices and labels
# ----------------------------------------------------------------------------------------------


def _slice_item(volume: Mapping, case: str, spatial_dim: int, index: int) -> dict:
    """One slice of a channel-first volume dict: copies (not views) with a per-slice file name."""
    item: dict[str, Any] = {"case": case, "slice": index}
    for key in ("image", "label"):
        data = volume[key].as_tensor() if isinstance(volume[key], MetaTensor) else torch.as_tensor(volume[key])
        meta = {ImageMetaKey.FILENAME_OR_OBJ: f"{case}_slice{index:03d}"}
        item[key] = MetaTensor(data.select(spatial_dim + 1, index).clone(), meta=meta)
    return item


def brats_slices(
    datalist: Sequence[Mapping],
    transform: Transform,
    spatial_dim: int = 2,
    min_brain_fraction: float = 0.01,
    tumour_free_fraction: float = 0.25,
    seed: int = 0,
    num_workers: int = 0,
    progress: bool = False,
) -> list[dict]:
    """Load BraTS volumes and extract 2D slices as an in-memory datalist for a 2D network.

    Each volume is loaded with ``transform`` (channel-first ``image`` (C, H, W, D) with zero
    background, as skull-stripped BraTS and ``NormalizeIntensityd(nonzero=True)`` leave it, and
    ``label`` (L, H, W, D) binary channels). Slices along ``spatial_dim`` whose brain (pixels
    where any channel is non-zero) covers at most ``min_brain_fraction`` of the slice are skipped;
    of the remaining slices without tumour (empty label), a fraction ``tumour_free_fraction``
    per case is kept, chosen with ``seed``; all tumour slices are kept.

    Args:
        datalist: items of :func:`brats_datalist` / :func:`brats_split` (with ``"case"``).
        transform: volume loading and preprocessing, e.g. the bundle's ``load_transforms``.
        spatial_dim: spatial axis to slice (2: axial after ``Orientationd(axcodes="RAS")``), as
            ``monai.inferers.SliceInferer(spatial_dim=...)`` slides at inference.
        min_brain_fraction: brain fraction of a slice at or below which it is skipped.
        tumour_free_fraction: fraction of the tumour-free brain slices kept, in [0, 1].
        seed: seed of the choice of tumour-free slices.
        num_workers: processes loading the volumes.
        progress: show a tqdm progress bar when tqdm is installed.

    Returns:
        ``[{"image": (C, H', W') MetaTensor, "label": (L, H', W') MetaTensor, "case", "slice"}]``
        in case and slice order, the slice's ``filename_or_obj`` being ``"<case>_slice<k>"``.

    Raises:
        ValueError: for an invalid fraction or ``spatial_dim``.
    """
    if not 0 <= tumour_free_fraction <= 1 or not 0 <= min_brain_fraction < 1:
        raise ValueError(
            f"need 0 <= tumour_free_fraction <= 1 and 0 <= min_brain_fraction < 1, "
            f"got {tumour_free_fraction} and {min_brain_fraction}."
        )
    if spatial_dim not in (0, 1, 2):
        raise ValueError(f"spatial_dim must be 0, 1 or 2, got {spatial_dim}.")
    rng = np.random.default_rng(seed)
    loader = DataLoader(Dataset(datalist, transform), batch_size=1, num_workers=num_workers, collate_fn=no_collation)
    volumes = tqdm(loader, desc="extracting BraTS slices") if progress and has_tqdm else loader
    slices: list[dict] = []
    for (volume,) in volumes:
        image = torch.as_tensor(volume["image"]).movedim(spatial_dim + 1, 1)  # (C, slices, ...)
        label = torch.as_tensor(volume["label"]).movedim(spatial_dim + 1, 1)
        brain = (image != 0).any(0).flatten(1).float().mean(1)
        tumour = (label > 0).any(0).flatten(1).any(1)
        candidates = torch.nonzero(brain > min_brain_fraction).flatten().tolist()
        free = [k for k in candidates if not tumour[k]]
        num_kept = round(tumour_free_fraction * len(free))
        keep = set(rng.choice(free, size=num_kept, replace=False).tolist()) if num_kept else set()
        slices += [_slice_item(volume, volume["case"], spatial_dim, k) for k in candidates if tumour[k] or k in keep]
    return slices


def regions_to_brats_labels(regions: torch.Tensor, enhancing_label: int = 4) -> torch.Tensor:
    """Turn binary TC/WT/ET channels back into one BraTS label map (the inverse of MONAI's
    ``ConvertToMultiChannelBasedOnBratsClassesd``), e.g. for MONAI Label and 3D Slicer.

    The regions are made nested first (ET inside TC inside WT): WT \\ TC -> 2 (edema),
    TC \\ ET -> 1 (necrotic core), ET -> ``enhancing_label``.

    Args:
        regions: (3, *spatial) binary channels TC, WT, ET.
        enhancing_label: 4 (2019-2021) or 3 (2023).

    Returns:
        (1, *spatial) label map, dtype of ``regions``.
    """
    if regions.shape[0] != 3:
        raise ValueError(f"expected 3 channels TC, WT, ET, got shape {tuple(regions.shape)}.")
    wt = regions[1:2] > 0
    tc = (regions[0:1] > 0) & wt
    et = (regions[2:3] > 0) & tc
    labels = 2 * wt.to(regions.dtype) - tc.to(regions.dtype) + (enhancing_label - 1) * et.to(regions.dtype)
    return labels


# ----------------------------------------------------------------------------------------------
# synthetic demo data
# ----------------------------------------------------------------------------------------------

# mean intensity of each tissue per modality (FLAIR, T1, T1ce, T2): brain, edema, enhancing, necrosis
_CONTRAST = np.array(
    [
        [0.45, 1.00, 0.75, 0.35],  # FLAIR: bright edema
        [0.70, 0.50, 0.55, 0.25],  # T1: dark tumour
        [0.55, 0.50, 1.30, 0.25],  # T1ce: bright enhancing rim
        [0.45, 0.95, 0.75, 1.10],  # T2: bright edema and necrosis
    ],
    dtype=np.float32,
)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise, normalised to zero mean and unit std."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return (field - field.mean()) / (field.std() + 1e-8)


def _make_case(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic case: (4, H, W, D) images (FLAIR, T1, T1ce, T2) and an (H, W, D) label map in
    2019 values. The brain is an ellipsoid that leaves the first and last slices empty; the tumour
    is three nested irregular blobs in one hemisphere: edema around a core whose centre is necrotic
    and whose rim enhances."""
    size = np.array(shape, dtype=np.float32)[:, None, None, None]
    grid = np.stack(np.meshgrid(*(np.arange(s, dtype=np.float32) for s in shape), indexing="ij"))
    centre = size / 2 - 0.5
    brain_radii = size * rng.uniform(0.37, 0.42, (3, 1, 1, 1)) * np.array([1.0, 1.05, 0.9])[:, None, None, None]
    brain = (((grid - centre) / brain_radii) ** 2).sum(0) <= 1

    side = rng.choice((-1, 1))  # left or right hemisphere
    offset = np.array([side * rng.uniform(0.1, 0.2), rng.uniform(-0.15, 0.15), rng.uniform(-0.08, 0.08)])
    tumour_centre = centre + offset[:, None, None, None] * size
    tumour_radii = size * np.array([0.15, 0.15, 0.17])[:, None, None, None] * rng.uniform(0.8, 1.2, (3, 1, 1, 1))
    distance = np.sqrt((((grid - tumour_centre) / tumour_radii) ** 2).sum(0))
    distance *= 1 + 0.18 * _smooth_field(rng, shape, 3.0)  # one irregular border for all three levels: nested
    label = np.zeros(shape, dtype=np.uint8)
    label[brain & (distance <= 1.0)] = 2  # edema
    label[brain & (distance <= 0.55)] = 4  # enhancing rim of the core
    label[brain & (distance <= 0.3)] = 1  # necrotic centre

    tissue = np.select([label == 2, label == 4, label == 1], [1, 2, 3], default=0)
    texture = 0.08 * _smooth_field(rng, shape, 1.5)
    bias = 1 + 0.1 * _smooth_field(rng, shape, 12.0)
    images = np.zeros((4, *shape), dtype=np.float32)
    for channel, contrast in enumerate(_CONTRAST):
        signal = (contrast[tissue] + texture) * bias + 0.04 * rng.standard_normal(shape, dtype=np.float32)
        images[channel] = np.where(brain, np.clip(signal, 0.02, None) * rng.uniform(600, 900), 0)
    return images, label


def make_brats_demo(
    dataset_dir: str | os.PathLike,
    num_cases: int = 6,
    shape: Sequence[int] = (96, 96, 32),
    seed: int = 0,
    label_convention: str = "2019",
    overwrite: bool = False,
) -> str:
    """Write a synthetic dataset in the BraTS layout (see the module docstring).

    Cases ``BraTS2021_00000``, ... hold int16 volumes of ``shape`` with a (-1, -1, 2) mm LPS-like
    affine (as BraTS volumes are stored, with a coarser slice spacing) and a uint8 label map;
    tumour-like nested blobs give all three regions. The data is learnable by a small ResU-Net
    in a few epochs.

    Args:
        dataset_dir: output folder, created if needed.
        num_cases: number of cases.
        shape: (H, W, D) of every volume.
        seed: random seed; the same arguments write identical files.
        label_convention: ``"2019"`` (enhancing 4) or ``"2023"`` (enhancing 3).
        overwrite: replace existing case folders.

    Returns:
        ``dataset_dir`` as a string.

    Raises:
        FileExistsError: when a case folder exists and ``overwrite`` is False.
    """
    values = brats_label_values(label_convention)
    dataset_dir = os.fspath(dataset_dir)
    shape = tuple(int(s) for s in shape)
    affine = np.diag([-1.0, -1.0, 2.0, 1.0])
    affine[:3, 3] = (shape[0] - 1, shape[1] - 1, -shape[2])
    rng = np.random.default_rng(seed)
    for index in range(num_cases):
        case = f"BraTS2021_{index:05d}"
        folder = os.path.join(dataset_dir, case)
        if os.path.exists(folder):
            if not overwrite:
                raise FileExistsError(f"{folder} exists; pass overwrite=True to replace it.")
            shutil.rmtree(folder)
        os.makedirs(folder)
        images, label = _make_case(rng, shape)
        label = np.asarray(values, dtype=np.uint8)[np.searchsorted(BRATS_LABEL_VALUES["2019"], label)]
        for modality, image in zip(BRATS_MODALITIES, images):
            volume = nib.Nifti1Image(np.round(image).astype(np.int16), affine)
            nib.save(volume, os.path.join(folder, f"{case}_{modality}{_NIFTI_EXT}"))
        nib.save(nib.Nifti1Image(label, affine), os.path.join(folder, f"{case}_seg{_NIFTI_EXT}"))
    return dataset_dir


def ensure_brats_demo(dataset_dir: str | os.PathLike, **kwargs: Any) -> str:
    """Create a demo dataset (:func:`make_brats_demo`) unless ``dataset_dir`` exists and is not empty.

    For bundle configs: ``"$monai_seg.data.ensure_brats_demo(@dataset_dir)"``. The data is written
    to a hidden temporary folder beside ``dataset_dir`` and renamed into place, so concurrent calls
    (one per distributed rank) never see a partial dataset.

    Args:
        dataset_dir: dataset folder.
        kwargs: arguments of :func:`make_brats_demo`.

    Returns:
        ``dataset_dir`` as a string.
    """
    dataset_dir = os.fspath(dataset_dir)
    if os.path.isdir(dataset_dir) and os.listdir(dataset_dir):
        return dataset_dir
    parent = os.path.dirname(os.path.abspath(dataset_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".brats_demo_", dir=parent)
    try:
        make_brats_demo(staging, **kwargs)
        try:
            os.replace(staging, dataset_dir)  # atomic; replaces an empty folder
        except OSError:
            if not (os.path.isdir(dataset_dir) and os.listdir(dataset_dir)):  # else another process won
                raise
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)
    return dataset_dir
