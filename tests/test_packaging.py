"""Packaging as the model zoo and an index expect it, checked cheaply (no build): the version in one place and in
the changelog, the Python versions claimed, and the bundles' version pins written from this environment and
inside the ranges of ``setup.cfg``. ``python -m build`` and ``twine check`` are in ``docs/install.md``."""

from __future__ import annotations

import configparser
import json
import re
import sys

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

import monai_seg
from monai_seg.pins import installed_version, main, metadata_files, pinned, write_pins
from tests.bundle_utils import BUNDLES, REPO


@pytest.fixture(scope="module")
def setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return config


def _requirements(text: str) -> dict[str, Requirement]:
    lines = (line.strip() for line in text.splitlines())
    return {canonicalize_name(r.name): r for r in (Requirement(line) for line in lines if line and line[0] != "#")}


def test_the_version_lives_in_the_package_and_heads_the_changelog(setup_cfg):
    assert setup_cfg["metadata"]["version"] == "attr: monai_seg.__version__"
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert released and released[0] == monai_seg.__version__, "CHANGELOG.md: a section for the package version"


def test_the_claimed_pythons_are_allowed_and_this_one_is_one(setup_cfg):
    python_requires = SpecifierSet(setup_cfg["options"]["python_requires"])
    claimed = re.findall(r"Python :: (3\.\d+)$", setup_cfg["metadata"]["classifiers"], re.M)
    assert claimed and all(version in python_requires for version in claimed)
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in claimed, "the tested Python is a classifier"


def test_the_pins_are_inside_the_ranges(setup_cfg):
    """The pins are those of the environment the bundles were last tested in (``python -m monai_seg.pins write``
    before a release); they need not equal this environment, which a fresh install resolves anew, but they must
    be versions that ``setup.cfg`` allows."""
    requirements = _requirements(setup_cfg["options"]["install_requires"])
    for path in metadata_files(BUNDLES):
        for name, version in pinned(json.loads(path.read_text())).items():
            requirement = requirements.get(canonicalize_name(name))
            assert requirement is not None, f"{path}: {name} is no dependency of setup.cfg"
            assert requirement.specifier.contains(version), f"{path}: {name}=={version} outside {requirement}"


def test_write_pins_updates_stale_pins_and_drops_monai_seg(tmp_path):
    configs = tmp_path / "demo_bundle" / "configs"
    configs.mkdir(parents=True)
    stale = {"version": "0.1.0", "numpy_version": "1.0.0",
             "required_packages_version": {"monai-seg": "0.1.0", "nibabel": "1.0.0"}}
    (configs / "metadata.json").write_text(json.dumps(stale))
    assert main(["check", str(tmp_path)]) == 1

    assert write_pins(tmp_path) == [configs / "metadata.json"]
    written = json.loads((configs / "metadata.json").read_text())
    assert written["version"] == "0.1.0" and written["numpy_version"] == installed_version("numpy")
    assert written["required_packages_version"] == {"nibabel": installed_version("nibabel")}
    assert written["pytorch_version"] == installed_version("torch") and "+" not in written["pytorch_version"]
    assert main(["check", str(tmp_path)]) == 0 and write_pins(tmp_path) == []


def test_a_package_that_is_not_installed_is_named(tmp_path):
    configs = tmp_path / "demo_bundle" / "configs"
    configs.mkdir(parents=True)
    (configs / "metadata.json").write_text(json.dumps({"required_packages_version": {"no-such-package": "1.0"}}))
    with pytest.raises(ValueError, match="no-such-package is not installed"):
        write_pins(tmp_path)
    with pytest.raises(ValueError, match="no \\*/configs/metadata.json"):
        write_pins(tmp_path / "demo_bundle")
