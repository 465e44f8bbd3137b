"""
The version pins of the bundles' ``metadata.json``, written from the environment that was tested.

The MONAI model zoo installs a bundle's dependencies as exact pins read from its metadata: ``monai_version``,
``pytorch_version``, ``numpy_version`` and each ``name: version`` of ``required_packages_version``
(``pip install monai==... torch==... numpy==... name==...``). A bundle's metadata names the packages it needs;
:func:`environment_pins` gives their versions installed here, and :func:`write_pins` writes them into every
``metadata.json``, so that the pins are those of the environment that ran the tests. ``monai-seg`` itself is no
pin: it is not on a package index, and the bundles need it installed from the repository (``pip install -e .``).

Command line (the tested environment active)::

    python -m monai_seg.pins write bundles      # rewrite the pins of every bundles/*/configs/metadata.json
    python -m monai_seg.pins check bundles      # exit 1, naming the files, when a pin differs
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from packaging.version import Version

from monai_seg.utils import read_json

__all__ = ["FRAMEWORK_PINS", "environment_pins", "installed_version", "metadata_files", "pinned", "stale_pins",
           "write_pins"]

FRAMEWORK_PINS: dict[str, str] = {"monai_version": "monai", "pytorch_version": "torch", "numpy_version": "numpy"}
"""Top-level metadata field -> the distribution whose version it pins."""

REQUIRED_KEY = "required_packages_version"


def installed_version(name: str) -> str:
    """The public version of an installed distribution (``2.13.0+cpu`` -> ``2.13.0``: a local label names a build,
    which an index does not serve).

    Raises:
        ValueError: when ``name`` is not installed.
    """
    try:
        return Version(version(name)).public
    except PackageNotFoundError:
        raise ValueError(f"{name} is not installed: the pins are read from the environment that runs the bundles.") from None


def environment_pins(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The pin fields of ``metadata`` with this environment's versions: the three framework fields and one
    entry of ``required_packages_version`` for each package the metadata names (``monai-seg`` left out).

    Args:
        metadata: the content of a bundle's ``metadata.json``.
    """
    required = [name for name in metadata.get(REQUIRED_KEY, {}) if name != "monai-seg"]
    return {
        **{field: installed_version(package) for field, package in FRAMEWORK_PINS.items()},
        REQUIRED_KEY: {name: installed_version(name) for name in required},
    }


def pinned(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Distribution name -> pinned version of ``metadata``, as the model zoo installs them."""
    pins = {package: metadata[field] for field, package in FRAMEWORK_PINS.items() if field in metadata}
    return {**pins, **metadata.get(REQUIRED_KEY, {})}


def metadata_files(bundles_dir: str | os.PathLike) -> list[Path]:
    """``<bundles_dir>/*/configs/metadata.json``, sorted.

    Raises:
        ValueError: when there is none.
    """
    files = sorted(Path(bundles_dir).glob("*/configs/metadata.json"))
    if not files:
        raise ValueError(f"{bundles_dir}: no */configs/metadata.json.")
    return files


def stale_pins(bundles_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``{metadata file: {field: (written, installed)}}`` for each pin that differs from this environment."""
    stale = {}
    for path in metadata_files(bundles_dir):
        metadata = read_json(path)
        wanted = environment_pins(metadata)
        diff = {key: (metadata.get(key), value) for key, value in wanted.items() if metadata.get(key) != value}
        if diff:
            stale[str(path)] = diff
    return stale


def write_pins(bundles_dir: str | os.PathLike) -> list[Path]:
    """Write :func:`environment_pins` into every ``metadata.json`` of ``bundles_dir`` (JSON, indent 4); the other
    fields keep their order and values. Returns the files that changed."""
    changed = []
    for path in metadata_files(bundles_dir):
        metadata = read_json(path)
        updated = {**metadata, **environment_pins(metadata)}
        text = json.dumps(updated, indent=4, ensure_ascii=False) + "\n"
        if text != path.read_text():
            path.write_text(text)
            changed.append(path)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """``write BUNDLES_DIR`` or ``check BUNDLES_DIR``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] not in ("write", "check"):
        print("usage: python -m monai_seg.pins {write,check} BUNDLES_DIR", file=sys.stderr)
        return 2
    command, bundles_dir = args
    if command == "write":
        for path in write_pins(bundles_dir):
            print(f"updated {path}")
        return 0
    stale = stale_pins(bundles_dir)
    for path, diff in stale.items():
        print(f"{path}: " + ", ".join(f"{key} {old} != {new}" for key, (old, new) in diff.items()), file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    status = main()
    if status:  # a zero status returns normally, as the other ``python -m monai_seg.<module>`` tools do
        sys.exit(status)
