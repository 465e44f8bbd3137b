"""One reader pipeline for every dataset layout: a layout is a short declaration (:class:`Layout`)
registered by name, and three functions read any registered layout the same way:

- :func:`load_datalist`: scan a section (``train/``, ``test/``, ...) against the layout's naming
  patterns, pair the files of each case by id, then open and check every file
  (:func:`validate_datalist`), naming the bad file or, with ``skip_invalid``, dropping the bad case;
- :func:`load_split`: the training and validation datalists, split by the layout's grouping key
  (subject, case: :func:`group_split`, :func:`group_kfold`) or taken from its official sections.

For bundle configs::

    "layout": "nerve",
    "datalists": "$monai_seg.data.load_split(@layout, monai_seg.data.ensure_demo(@layout, @dataset_dir),
                  val_fraction=@val_fraction, seed=@seed, validate=@validate_data, skip_invalid=@skip_invalid)"
"""

from __future__ import annotations

import inspect
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np

from .folders import IMAGE_SUFFIXES, pair_files, scan_folder
from .validation import check_cases, check_disjoint_ids

__all__ = [
    "FileKind",
    "Section",
    "Layout",
    "register_layout",
    "get_layout",
    "layout_names",
    "scan_section",
    "load_datalist",
    "validate_datalist",
    "load_split",
    "group_split",
    "group_kfold",
]

LABEL_OPTIONS = ("required", "optional", "none")


@dataclass(frozen=True)
class FileKind:
    """One kind of file of a section (image, label, field-of-view mask, ...).

    Args:
        key: its datalist key.
        pattern: regular expression that file names fully match (case-insensitive); its named groups
            make the case id (:attr:`Section.id`); ``{section}`` stands for the section's name.
        template: the file name written with the same fields, for the error messages
            (``"{subject}_{img}_mask.tif"``).
        folder: its folder below the section folder (``""``: the section folder itself).
        label: an annotation: listed when the section has such files, dropped with ``labels="none"``.
    """

    key: str
    pattern: str
    template: str
    folder: str = ""
    label: bool = False


@dataclass(frozen=True)
class Section:
    """The files of a section and how their names make the case id.

    Args:
        files: the kinds of file, the image first.
        id: format of the case id from the named groups of the patterns (``"{subject}_{img}"``).
        id_key: datalist key of the id; None: not listed.
        fields: named groups also listed in the items, as integers (``("subject", "img")``).
    """

    files: tuple[FileKind, ...]
    id: str = "{id}"
    id_key: str | None = "id"
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layout:
    """A dataset layout: how its folders are named, checked and split.

    Args:
        name: registry name (``"nerve"``).
        title: dataset name in the messages (``"Kaggle nerve"``).
        sections: section name -> its files; the first section is the default.
        check: ``check(item, **options)`` raises a ``ValueError`` naming the bad file of a case.
        group: datalist key that groups the cases of one subject or patient; the split keeps each group on
            one side. None: the layout has official ``train`` and ``val`` sections.
        holds_out_test: the layout has no test section: :func:`load_split` also holds out a test set.
        ignore: regular expression of image files of the layout that are not used (superpixel maps).
        suffixes: file suffixes a scan looks at; None: every visible file must follow the naming.
        options: the layout's own keyword arguments and their defaults (e.g. ``{"num_classes": 3}``).
        read: ``read(layout, dataset_dir, section, labels, skip_invalid, **options)`` replacing the folder scan
            for layouts that are not flat folders of named files (case folders, a datalist JSON).
        has_section: ``has_section(dataset_dir, section)``: whether a dataset has the section (default: its
            folder exists); a dataset with a ``val`` section is split as given.
    """

    name: str
    title: str
    sections: Mapping[str, Section]
    check: Callable[..., None]
    group: str | None = None
    holds_out_test: bool = False
    ignore: str | None = None
    suffixes: tuple[str, ...] | None = IMAGE_SUFFIXES
    options: Mapping[str, Any] = field(default_factory=dict)
    read: Callable[..., list[dict]] | None = None
    has_section: Callable[[str, str], bool] = lambda dataset_dir, section: os.path.isdir(os.path.join(dataset_dir,
                                                                                                      section))


_LAYOUTS: dict[str, Layout] = {}


def register_layout(layout: Layout) -> Layout:
    """Add ``layout`` to the registry under its name (replacing a layout of that name); returns it."""
    _LAYOUTS[layout.name] = layout
    return layout


def layout_names() -> list[str]:
    """Names of the registered layouts, sorted."""
    return sorted(_LAYOUTS)


def get_layout(layout: str | Layout) -> Layout:
    """The registered layout called ``layout`` (a :class:`Layout` is returned as it is).

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if isinstance(layout, Layout):
        return layout
    if layout not in _LAYOUTS:
        raise ValueError(f"Unknown dataset layout {layout!r}; the layouts are: {', '.join(layout_names())}.")
    return _LAYOUTS[layout]


def _layout_options(layout: Layout, options: Mapping[str, Any]) -> dict[str, Any]:
    """The layout's options with the given values. A bundle passes the options of its own layout; another
    layout ignores those, and a name no registered layout takes is an error (a typo)."""
    known = {name for other in _LAYOUTS.values() for name in other.options}
    unknown = sorted(set(options) - known - set(layout.options))
    if unknown:
        raise ValueError(f"Unknown layout options {unknown}; the {layout.name} layout takes {sorted(layout.options)}.")
    return {name: options.get(name, default) for name, default in layout.options.items()}


def _accepted(func: Callable, values: Mapping[str, Any]) -> dict[str, Any]:
    """The ``values`` that ``func`` takes as keyword arguments."""
    parameters = inspect.signature(func).parameters
    return {name: value for name, value in values.items() if name in parameters}


def _section_name(layout: Layout, section: str | None) -> str:
    if section is None:
        return next(iter(layout.sections))
    if section not in layout.sections:
        raise ValueError(f"section must be one of {list(layout.sections)}, got {section!r}.")
    return section


def _case(section: Section, match: re.Match) -> tuple[str, dict[str, Any]]:
    """Case id and listed fields of a matched file name."""
    groups = {name: int(value) if name in section.fields else value for name, value in match.groupdict().items()}
    return section.id.format(**groups), {name: groups[name] for name in section.fields}


def scan_section(
    layout: Layout,
    dataset_dir: str,
    section: str,
    labels: str = "optional",
    skip_invalid: bool | str = False,
    folders: Mapping[str, str] | None = None,
) -> list[dict]:
    """Datalist of a section of a flat-folder layout: every file name checked, the files of a case paired by id.

    Args:
        layout: the layout.
        dataset_dir: the dataset folder.
        section: a section of the layout.
        labels: ``"required"`` (every case has its label files), ``"optional"`` (listed when the section
            has label files, then for every case) or ``"none"`` (not listed).
        skip_invalid: log and drop an incomplete case instead of raising.
        folders: file key -> its folder instead of the declared one (see :func:`load_datalist`).

    Raises:
        ValueError: naming the folder or file for a missing folder, a name outside the layout, two files
            with the same id, or a case without one of its files.
    """
    root = os.path.join(dataset_dir, section)
    if not os.path.isdir(root):
        where = f"{root} does not exist" if os.path.isdir(dataset_dir) else (
            f"{dataset_dir} does not exist (looked for {root})")
        raise ValueError(f"{layout.title} folder {where}.")
    declared = layout.sections[section]
    by_folder: dict[str, list[FileKind]] = {}
    for kind in declared.files:
        folder = os.fspath((folders or {}).get(kind.key, kind.folder))
        kind = replace(kind, pattern=kind.pattern.replace("{section}", re.escape(section)),
                       template=os.path.join(root, folder, kind.template.replace("{section}", section)))
        by_folder.setdefault(folder, []).append(kind)
    ignore = re.compile(layout.ignore, re.IGNORECASE) if layout.ignore else None
    files, templates = {}, {}
    for folder, kinds in by_folder.items():
        path = os.path.join(root, folder)
        if folder and not os.path.isdir(path):
            if all(kind.label for kind in kinds) and labels != "required":
                continue
            raise ValueError(f"{layout.title} folder {root} has no {folder}/ folder.")
        patterns = {kind.key: re.compile(kind.pattern, re.IGNORECASE) for kind in kinds}
        naming = ", ".join(repr(os.path.basename(kind.template)) for kind in kinds)
        found = scan_folder(path, patterns, layout.title, naming, ignore, layout.suffixes, partial(_case, declared))
        for kind in kinds:
            if not kind.label or labels == "required" or (labels == "optional" and found[kind.key]):
                files[kind.key], templates[kind.key] = found[kind.key], kind.template
    return pair_files(files, templates, declared.id_key, f"{layout.title} {root}", skip_invalid)


def load_datalist(
    layout: str | Layout,
    dataset_dir: str | os.PathLike,
    section: str | None = None,
    labels: str = "optional",
    validate: bool = True,
    skip_invalid: bool | str = False,
    failures_csv: str | os.PathLike | None = None,
    progress: bool | None = None,
    folders: Mapping[str, str] | None = None,
    **options: Any,
) -> list[dict]:
    """Read a section of a dataset into a MONAI datalist and check every file.

    For bundle configs, e.g. ``"$monai_seg.data.load_datalist(@layout, @dataset_dir, 'test',
    skip_invalid=@skip_invalid, failures_csv=@output_dir + '/failures.csv')"``.

    Args:
        layout: a registered layout name (:func:`layout_names`) or a :class:`Layout`.
        dataset_dir: the dataset folder.
        section: a section of the layout; None: its first (e.g. ``"train"``).
        labels: ``"required"``, ``"optional"`` (listed where the section has them) or ``"none"``.
        validate: open and check every file (:func:`validate_datalist`).
        skip_invalid: log and drop a bad case instead of raising; the log reports how many were
            skipped (:func:`monai_seg.data.validation.check_cases`).
        failures_csv: with ``skip_invalid``, write the dropped cases of the file checks to this CSV (``file,error``).
        progress: progress bar of the file checks; None: for large datalists.
        folders: file key -> its folder (absolute, or below the section folder) instead of the layout's,
            e.g. ``{"label": "/data/ISIC-2017_Training_Part1_GroundTruth"}``.
        options: the layout's own options (:attr:`Layout.options`); the read and check functions each
            receive those they take.

    Returns:
        ``[{"image", "label", ..., "id"}]`` sorted by id (digit runs numerically); the keys are the layout's.

    Raises:
        ValueError: for an unknown layout, section, ``labels`` value or option, and naming the folder or file
            for a missing folder, a name outside the layout, an incomplete case or a bad file.
    """
    layout = get_layout(layout)
    if labels not in LABEL_OPTIONS:
        raise ValueError(f"labels must be one of {list(LABEL_OPTIONS)}, got {labels!r}.")
    values = _layout_options(layout, options)
    section = _section_name(layout, section)
    if layout.read is not None:
        datalist = layout.read(layout, os.fspath(dataset_dir), section, labels, skip_invalid,
                               **_accepted(layout.read, values))
    else:
        datalist = scan_section(layout, os.fspath(dataset_dir), section, labels, skip_invalid, folders)
    if not validate:
        return datalist
    return validate_datalist(layout, datalist, progress, skip_invalid, failures_csv, **values)


def validate_datalist(
    layout: str | Layout,
    datalist: Sequence[dict],
    progress: bool | None = None,
    skip_invalid: bool | str = False,
    failures_csv: str | os.PathLike | None = None,
    **options: Any,
) -> Sequence[dict]:
    """Open every file of a datalist of ``layout`` and check it with the layout's file checks.

    Args:
        layout: a registered layout name or a :class:`Layout`.
        datalist: items of :func:`load_datalist` (``validate=False``).
        progress: show a tqdm progress bar; None: for large datalists.
        skip_invalid: log and drop a bad case instead of raising.
        failures_csv: with ``skip_invalid``, write the dropped cases to this CSV (``file,error``).
        options: the layout's own options (e.g. ``num_classes``).

    Returns:
        ``datalist`` itself when every case passes (so that calls can be chained), otherwise the good cases.

    Raises:
        ValueError: naming the file for the first bad case, unless ``skip_invalid``.
    """
    layout = get_layout(layout)
    check = partial(layout.check, **_accepted(layout.check, _layout_options(layout, options)))
    return check_cases(datalist, check, layout.title, skip_invalid, progress, failures_csv)


def load_split(
    layout: str | Layout,
    dataset_dir: str | os.PathLike,
    val_fraction: float = 0.2,
    test_fraction: float = 0.1,
    fold: int | None = None,
    num_folds: int = 5,
    seed: int = 0,
    validate: bool = True,
    skip_invalid: bool | str = False,
    **options: Any,
) -> dict[str, list[dict]]:
    """Training and validation datalists of a dataset (and test, for layouts without a test section).

    The official ``train`` and ``val`` sections where the dataset has them (or the layout has no grouping
    key); otherwise a split by the layout's grouping key (:attr:`Layout.group`), never splitting a subject
    or case: a random split (:func:`group_split`) or fold ``fold`` of ``num_folds``, the items' own
    ``fold`` keys where every item has one, else :func:`group_kfold`.

    Args:
        layout: a registered layout name or a :class:`Layout`.
        dataset_dir: the dataset folder.
        val_fraction: held-out fraction of the groups for validation.
        test_fraction: held-out fraction of the groups for testing, for layouts that hold out a test set
            (:attr:`Layout.holds_out_test`).
        fold: validation fold of a k-fold split; None: a single split.
        num_folds: number of folds when ``fold`` is given.
        seed: seed of the split; the same seed gives the same split.
        validate: open and check every file first.
        skip_invalid: log and drop a bad case instead of raising.
        options: the layout's own options.

    Returns:
        ``{"train": [...], "val": [...]}`` (and ``"test"``), each in datalist order.

    Raises:
        ValueError: for an id in two sections, see :func:`load_datalist`, :func:`group_split` and :func:`group_kfold`.
    """
    layout = get_layout(layout)
    read = partial(load_datalist, layout, dataset_dir, labels="required", validate=validate,
                   skip_invalid=skip_invalid, **options)
    if layout.group is None or ("val" in layout.sections and layout.has_section(os.fspath(dataset_dir), "val")):
        split = {section: read(section) for section in ("train", "val")}
        check_disjoint_ids(split)
        return split
    datalist = read()
    if fold is not None and datalist and all("fold" in item for item in datalist):
        return {"train": [item for item in datalist if item["fold"] != fold],
                "val": [item for item in datalist if item["fold"] == fold]}
    if fold is not None:
        return group_kfold(datalist, layout.group, num_folds, fold, seed)
    fractions = {"test": test_fraction} if layout.holds_out_test else {}
    return group_split(datalist, layout.group, {**fractions, "val": val_fraction}, seed)


def _group_sizes(datalist: Sequence[dict], key: str) -> Counter:
    """Items per group, groups in the order they first appear; ValueError for an item without ``key``."""
    for item in datalist:
        if key not in item:
            raise ValueError(f"Datalist item {item.get('image')} has no {key!r}: split a datalist of the layout.")
    return Counter(item[key] for item in datalist)


def _select(datalist: Sequence[dict], key: str, parts: Mapping[str, set]) -> dict[str, list[dict]]:
    """``{"train": the items of no part, **{part: its items}}``, in datalist order."""
    held_out = set().union(*parts.values())
    split = {"train": [item for item in datalist if item[key] not in held_out]}
    return {**split, **{name: [item for item in datalist if item[key] in groups] for name, groups in parts.items()}}


def group_split(
    datalist: Sequence[dict], key: str, fractions: Mapping[str, float], seed: int = 0
) -> dict[str, list[dict]]:
    """Split a datalist by group (subject, patient, case), each group wholly on one side.

    The groups are shuffled with ``seed``; the parts take, in the order of ``fractions``, the next
    ``round(n * fraction)`` groups (at least one for a positive fraction); training keeps the rest.

    Args:
        datalist: items holding ``key``.
        key: the grouping key.
        fractions: part name -> fraction of the groups in [0, 1), e.g. ``{"test": 0.1, "val": 0.1}``.
        seed: seed of the shuffle; the split is deterministic for a given seed.

    Returns:
        ``{"train": [...], **{part: [...]}}``, each in datalist order.

    Raises:
        ValueError: for a fraction outside [0, 1), an item without ``key``, fewer than 2 groups or no group
            left for training.
    """
    for name, fraction in fractions.items():
        if not 0 <= fraction < 1:
            raise ValueError(f"{name}_fraction must be in [0, 1), got {fraction}.")
    groups = list(_group_sizes(datalist, key))
    if len(groups) < 2:
        raise ValueError(f"A split by {key} needs at least 2 {key}s, got {len(groups)}.")
    counts = {name: max(round(len(groups) * f), 1) if f > 0 else 0 for name, f in fractions.items()}
    if sum(counts.values()) >= len(groups):
        held = " and ".join(f"{count} {name}" for name, count in reversed(counts.items()))
        raise ValueError(f"{len(groups)} {key}s leave none for training with {held} {key}s.")
    order = np.random.default_rng(seed).permutation(len(groups))
    parts, start = {}, 0
    for name, count in counts.items():
        parts[name] = {groups[i] for i in order[start : start + count]}
        start += count
    return _select(datalist, key, parts)


def group_kfold(datalist: Sequence[dict], key: str, num_folds: int = 5, fold: int = 0, seed: int = 0
                ) -> dict[str, list[dict]]:
    """Split a datalist for k-fold cross validation by group.

    Groups are shuffled (by ``seed``), then assigned, largest first, to the fold holding the fewest
    items, so folds are balanced in item count and each group is in exactly one fold.

    Args:
        datalist: items holding ``key``.
        key: the grouping key.
        num_folds: number of folds, at least 2.
        fold: index of the validation fold, in ``[0, num_folds)``.
        seed: seed of the shuffle; the folds are deterministic for a given seed.

    Returns:
        ``{"train": [...], "val": [...]}`` in datalist order, val being fold ``fold``.

    Raises:
        ValueError: when ``num_folds < 2``, ``fold`` is out of range, or there are fewer groups than folds.
    """
    if num_folds < 2:
        raise ValueError(f"num_folds must be at least 2, got {num_folds}.")
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in [0, {num_folds}), got {fold}.")
    counts = _group_sizes(datalist, key)
    if len(counts) < num_folds:
        raise ValueError(f"{num_folds} folds need at least {num_folds} {key}s, got {len(counts)}.")
    groups = list(counts)
    shuffled = [groups[i] for i in np.random.default_rng(seed).permutation(len(groups))]
    shuffled.sort(key=lambda group: -counts[group])  # stable: equal counts keep the shuffled order
    fold_sizes = [0] * num_folds
    folds: list[set] = [set() for _ in range(num_folds)]
    for group in shuffled:
        lightest = int(np.argmin(fold_sizes))
        folds[lightest].add(group)
        fold_sizes[lightest] += counts[group]
    return _select(datalist, key, {"val": folds[fold]})
