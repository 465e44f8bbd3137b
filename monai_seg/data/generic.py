"""Your own data in two common layouts, for every bundle (``--layout decathlon`` / ``--layout nnunet``):

- ``decathlon``: a MONAI / Medical Segmentation Decathlon datalist JSON (``training``, ``validation`` and
  ``test`` sections, read with ``monai.data.load_decathlon_datalist``; relative paths are resolved
  against the JSON's folder; optional ``fold`` keys). ``dataset_dir`` is the JSON file or a folder
  holding ``dataset.json``.
- ``nnunet``: an nnU-Net raw dataset folder (``dataset.json`` with ``channel_names``, ``labels`` and
  ``file_ending``; ``imagesTr/<case>_0000<ending>``, ``<case>_0001<ending>``, ... one file a channel;
  ``labelsTr/<case><ending>``; ``imagesTs/``). The image of a multi-channel case is the list of its
  channel files, which ``LoadImaged(..., ensure_channel_first=True)`` stacks as channels.

Both are checked against the bundle: options ``in_channels`` (the network's input channels) and
``label_values`` (the bundle's label map); every file is read once.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from monai.data import load_decathlon_datalist
from monai.transforms import LoadImage

from .layouts import Layout, Section, register_layout
from .validation import check_cases

__all__ = ["DECATHLON_LAYOUT", "NNUNET_LAYOUT", "check_loaded_item"]

_KEYS = {"train": "training", "val": "validation", "test": "test"}  # section -> Decathlon JSON key
_NNUNET_FOLDERS = {"train": ("imagesTr", "labelsTr"), "test": ("imagesTs", "labelsTs")}
_OPTIONS = {"in_channels": None, "label_values": None}


def _load(path: str | Sequence[str], channel_first: bool) -> np.ndarray:
    """The array of an image file (or of channel files), as the bundles' ``LoadImaged`` reads it (in the file's
    data type)."""
    try:
        return np.asarray(LoadImage(image_only=True, dtype=None, ensure_channel_first=channel_first)(path))
    except Exception as err:
        raise ValueError(f"Cannot read image {path}: {err}") from err


def check_loaded_item(
    item: Mapping, in_channels: int | None = None, label_values: Sequence[int] | None = None
) -> None:
    """Read the files of a case and check them against the bundle.

    Args:
        item: datalist item with ``"image"`` (a file, or a list of channel files) and optionally ``"label"``.
        in_channels: the network's input channels; None: not checked.
        label_values: the bundle's label map; None: not checked.

    Raises:
        ValueError: naming the file for an unreadable file, another channel count, a label of another
            spatial shape than its image, or label values outside ``label_values``.
    """
    image = _load(item["image"], channel_first=True)
    name = item["image"] if isinstance(item["image"], str) else item["image"][0]
    if in_channels is not None and image.shape[0] != in_channels:
        raise ValueError(f"Image {name} has {image.shape[0]} channel(s), but the bundle's network takes "
                         f"in_channels={in_channels}.")
    if "label" not in item:
        return
    label = _load(item["label"], channel_first=False)
    if label.shape[: image.ndim - 1] != image.shape[1:]:
        raise ValueError(f"Label {item['label']} has shape {label.shape} but its image {name} has spatial shape "
                         f"{image.shape[1:]}.")
    if label_values is not None:
        outside = sorted(set(np.unique(label).tolist()) - set(label_values))
        if outside:
            raise ValueError(f"Label {item['label']} has values {outside} outside the bundle's label map "
                             f"{sorted(label_values)}.")


def _check_files_exist(item: Mapping) -> None:
    """ValueError naming the first listed file of a case that does not exist."""
    for key in ("image", "label"):
        paths = item.get(key, [])
        for path in [paths] if isinstance(paths, str) else paths:
            if not os.path.isfile(path):
                raise ValueError(f"Case {item['id']} has no {key} file {path}.")


def _stem(path: str) -> str:
    name = os.path.basename(path)
    return name[: -len(".nii.gz")] if name.endswith(".nii.gz") else os.path.splitext(name)[0]


def _decathlon_json(dataset_dir: str) -> str:
    path = os.path.join(dataset_dir, "dataset.json") if os.path.isdir(dataset_dir) else dataset_dir
    if not os.path.isfile(path):
        raise ValueError(f"Decathlon datalist {path} does not exist.")
    return path


def _decathlon_sections(dataset_dir: str) -> dict[str, Any]:
    path = _decathlon_json(dataset_dir)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"Cannot read the Decathlon datalist {path}: {err}") from err


def read_decathlon(
    layout: Layout, dataset_dir: str, section: str, labels: str = "optional", skip_invalid: bool | str = False
) -> list[dict]:
    """Datalist of a section (``train``, ``val``, ``test``) of a Decathlon datalist JSON.

    Each item keeps its keys (``fold``, ...) and gets ``"id"``, its image's file name without extension,
    unless it has one; ``labels="none"`` drops ``"label"``.

    Raises:
        ValueError: naming the JSON when it is missing, unreadable or lacks the section, and naming the file
            for a case without label (``labels="required"``) or a listed file that does not exist (unless
            ``skip_invalid``).
    """
    path = _decathlon_json(dataset_dir)
    if _KEYS[section] not in _decathlon_sections(dataset_dir):
        raise ValueError(f"Decathlon datalist {path} has no '{_KEYS[section]}' section.")
    items = load_decathlon_datalist(path, is_segmentation=True, data_list_key=_KEYS[section])
    datalist = []
    for item in items:
        image = item["image"] if isinstance(item["image"], str) else item["image"][0]
        if labels == "required" and "label" not in item:
            raise ValueError(f"Image {image} has no label in the '{_KEYS[section]}' section of {path}.")
        item = {k: v for k, v in item.items() if k != "label" or labels != "none"}
        datalist.append({**item, "id": item.get("id", _stem(image))})
    return check_cases(datalist, _check_files_exist, f"Decathlon {path}", skip_invalid, progress=False)


def _nnunet_description(dataset_dir: str, in_channels: int | None, label_values: Sequence[int] | None) -> dict:
    """``dataset.json`` of an nnU-Net raw dataset, checked against the bundle."""
    path = os.path.join(dataset_dir, "dataset.json")
    try:
        with open(path) as f:
            description = json.load(f)
        channels, classes, ending = description["channel_names"], description["labels"], description["file_ending"]
    except (OSError, json.JSONDecodeError, KeyError) as err:
        raise ValueError(f"Cannot read the nnU-Net dataset description {path}: {err!r}") from err
    if in_channels is not None and len(channels) != in_channels:
        raise ValueError(f"{path} declares {len(channels)} channel(s) {list(channels.values())}, but the bundle's "
                         f"network takes in_channels={in_channels}.")
    values = set(classes.values()) if all(isinstance(v, int) for v in classes.values()) else None
    if values is None:
        raise ValueError(f"{path}: region-based labels {classes} are not supported; give one integer per class.")
    if label_values is not None and not values <= set(label_values):
        raise ValueError(f"{path} declares label values {sorted(values - set(label_values))} outside the bundle's "
                         f"label map {sorted(label_values)}.")
    return {"channels": len(channels), "labels": sorted(values), "ending": ending}


def read_nnunet(
    layout: Layout,
    dataset_dir: str,
    section: str,
    labels: str = "optional",
    skip_invalid: bool | str = False,
    in_channels: int | None = None,
    label_values: Sequence[int] | None = None,
) -> list[dict]:
    """Datalist of ``imagesTr``/``labelsTr`` (``train``) or ``imagesTs`` (``test``) of an nnU-Net raw dataset:
    ``[{"image": path (one channel) or [channel paths], "label", "id": case}]`` sorted by case.

    Raises:
        ValueError: naming ``dataset.json`` when it is unreadable or does not fit the bundle (``in_channels``,
            ``label_values``), and naming the file for a name outside the nnU-Net naming, a label without
            image, or a missing channel or label file (unless ``skip_invalid``).
    """
    description = _nnunet_description(dataset_dir, in_channels, label_values)
    image_dir, label_dir = (os.path.join(dataset_dir, name) for name in _NNUNET_FOLDERS[section])
    if not os.path.isdir(image_dir):
        raise ValueError(f"nnU-Net folder {image_dir} does not exist.")
    pattern = re.compile(rf"(?P<case>.+)_(?P<channel>\d{{4}}){re.escape(description['ending'])}")
    cases: dict[str, set[int]] = {}
    for name in sorted(os.listdir(image_dir)):
        if name.startswith("."):
            continue
        match = pattern.fullmatch(name)
        if match is None:
            raise ValueError(f"{os.path.join(image_dir, name)} does not follow the nnU-Net naming "
                             f"'<case>_<XXXX>{description['ending']}'.")
        cases.setdefault(match["case"], set()).add(int(match["channel"]))
    if not cases:
        raise ValueError(f"nnU-Net folder {image_dir} has no images.")
    with_labels = labels == "required" or (labels == "optional" and os.path.isdir(label_dir))
    ending = description["ending"]
    for name in sorted(os.listdir(label_dir)) if with_labels and os.path.isdir(label_dir) else ():
        if name.endswith(ending) and name[: -len(ending)] not in cases:
            raise ValueError(f"Label file {os.path.join(label_dir, name)} has no image "
                             f"{os.path.join(image_dir, name[: -len(ending)] + '_0000' + ending)}.")
    datalist = []
    for case in sorted(cases):
        files = [os.path.join(image_dir, f"{case}_{c:04d}{ending}") for c in range(description["channels"])]
        item: dict[str, Any] = {"image": files[0] if len(files) == 1 else files}
        if with_labels:
            item["label"] = os.path.join(label_dir, f"{case}{ending}")
        datalist.append({**item, "id": case})
    return check_cases(datalist, _check_files_exist, f"nnU-Net {image_dir}", skip_invalid, progress=False)


DECATHLON_LAYOUT = register_layout(
    Layout(
        name="decathlon",
        title="Decathlon",
        sections={section: Section(files=()) for section in _KEYS},
        check=check_loaded_item,
        group="id",
        options=_OPTIONS,
        read=read_decathlon,
        has_section=lambda dataset_dir, section: _KEYS[section] in _decathlon_sections(dataset_dir),
    )
)
"""A MONAI / Decathlon datalist JSON: its ``validation`` section when it has one, else a split of ``training``
(by its ``fold`` keys with ``fold``, or random)."""

NNUNET_LAYOUT = register_layout(
    Layout(
        name="nnunet",
        title="nnU-Net",
        sections={section: Section(files=()) for section in _NNUNET_FOLDERS},
        check=check_loaded_item,
        group="id",
        options=_OPTIONS,
        read=read_nnunet,
    )
)
"""An nnU-Net raw dataset folder: ``imagesTr``/``labelsTr`` split by case, ``imagesTs`` for inference."""
