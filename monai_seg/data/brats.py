"""BraTS brain-tumour MRI layout (case folders, split by case), 2D slice extraction and label conversion.

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
separator="-"``, the same channel order). Datalists: ``[{"image": [one path per modality], "label", "case"}]``.
"""

from __future__ import annotations

import os
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
from .layouts import Layout, Section, register_layout
from .validation import check_cases, check_finite

tqdm, has_tqdm = optional_import("tqdm", name="tqdm")

__all__ = [
    "BRATS_MODALITIES",
    "BRATS_LABEL_VALUES",
    "BRATS_REGIONS",
    "BRATS_LAYOUT",
    "read_case_folders",
    "check_brats_case",
    "brats_label_values",
    "brats_case_name",
    "brats_name_formatter",
    "brats_slices",
    "regions_to_brats_labels",
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


def read_case_folders(
    layout: Layout,
    dataset_dir: str,
    section: str,
    labels: str = "optional",
    skip_invalid: bool | str = False,
    modalities: Sequence[str] = BRATS_MODALITIES,
    separator: str = "_",
) -> list[dict]:
    """Datalist of a BraTS dataset folder (see the module docstring): one item per case folder.

    Only file names are checked here; the layout's check opens the files.

    Args:
        layout: the BraTS layout.
        dataset_dir: folder holding one sub-folder per case; hidden entries and files are ignored.
        section: unused (BraTS has one section, the dataset folder).
        labels: ``"required"`` (every case has ``<case><separator>seg.nii.gz``), ``"optional"``
            (listed where present, e.g. for inference) or ``"none"`` (never listed).
        skip_invalid: log and drop a case with a missing modality (or label) instead of raising.
        modalities: file suffixes of the image channels, in channel order.
        separator: between the case and the suffix, ``"_"`` (2019-2021) or ``"-"`` (2023).

    Returns:
        ``[{"image": [one path per modality], "label": path, "case": name}]`` sorted by case name.

    Raises:
        ValueError: naming the folder or file for a missing or empty dataset folder, a missing
            modality, or a missing label when required.
    """
    if not os.path.isdir(dataset_dir):
        raise ValueError(f"{layout.title} dataset folder {dataset_dir} does not exist.")
    cases = sorted(e.name for e in os.scandir(dataset_dir) if e.is_dir() and not e.name.startswith("."))
    if not cases:
        raise ValueError(f"{layout.title} dataset folder {dataset_dir} has no case folders.")
    datalist = []
    for case in cases:
        folder = os.path.join(dataset_dir, case)
        item: dict[str, Any] = {"image": [os.path.join(folder, f"{case}{separator}{m}{_NIFTI_EXT}")
                                          for m in modalities]}
        label_path = os.path.join(folder, f"{case}{separator}seg{_NIFTI_EXT}")
        if labels == "required" or (labels == "optional" and os.path.isfile(label_path)):
            item["label"] = label_path
        item["case"] = case
        datalist.append(item)
    return check_cases(datalist, _check_case_files, f"BraTS {dataset_dir}", skip_invalid, progress=False)


def _check_case_files(item: Mapping) -> None:
    """ValueError naming the file when a modality or the label of a :func:`read_case_folders` item is missing."""
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


def check_brats_case(item: Mapping, label_convention: str = "2019") -> None:
    """Read every file of a case and check it: complete 3D NIfTI volumes of one shape and affine, without
    NaN or infinite values; the label's values within ``label_convention`` (:func:`brats_label_values`).

    Raises:
        ValueError: naming the file for an unreadable, truncated or non-3D volume, NaN or infinite
            values, a shape or affine that differs from the case's first modality, or label values
            outside the convention; for an unknown convention.
    """
    label_values = brats_label_values(label_convention)
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


BRATS_LAYOUT = register_layout(
    Layout(
        name="brats",
        title="BraTS",
        sections={"": Section(files=())},
        check=check_brats_case,
        group="case",
        holds_out_test=True,
        options={"modalities": BRATS_MODALITIES, "separator": "_", "label_convention": "2019"},
        read=read_case_folders,
    )
)
"""The BraTS layout: one folder per case, split by case into train, val and test; options ``modalities``,
``separator`` (the file names) and ``label_convention`` (``"2019"``: values 0, 1, 2, 4, also 2020/2021;
``"2023"``: 0, 1, 2, 3)."""


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
        datalist: BraTS datalist items (with ``"case"``), e.g. of :func:`monai_seg.data.load_split`.
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
