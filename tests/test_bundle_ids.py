"""Every bundle uses the same config ids, as the MONAI model zoo's key check expects: ``train`` and
``validate`` sections with ``preprocessing``, ``dataset``, ``dataloader``, ``inferer``, ... wired into the
trainer and the evaluator, ``evaluate.json`` merged onto ``train.json``, one split, and the inference ids
MONAI Label reads. Checked on the raw configs (nothing is instantiated), training with every variant."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from tests.bundle_utils import BUNDLES, ROLE_FILES

NAMES = sorted(path.name for path in BUNDLES.iterdir() if (path / "configs" / "train.json").is_file())

TRAIN_IDS = (
    "train#preprocessing", "train#dataset", "train#dataloader", "train#inferer", "train#handlers", "train#trainer",
    "validate#preprocessing", "validate#dataset", "validate#dataloader", "validate#inferer",
    "validate#postprocessing", "validate#handlers", "validate#evaluator",
    "datalists", "initialize", "run", "training",
)
"""Ids of ``train.json`` (and of ``evaluate.json`` merged onto it)."""

TRAIN_WIRING = {
    "train#dataset#transform": "@train#preprocessing",
    "train#dataloader#dataset": "@train#dataset",
    "train#trainer#train_data_loader": "@train#dataloader",
    "train#trainer#inferer": "@train#inferer",
    "train#trainer#train_handlers": "@train#handlers",
    "validate#dataset#transform": "@validate#preprocessing",
    "validate#dataloader#dataset": "@validate#dataset",
    "validate#evaluator#val_data_loader": "@validate#dataloader",
    "validate#evaluator#inferer": "@validate#inferer",
    "validate#evaluator#postprocessing": "@validate#postprocessing",
    "validate#evaluator#val_handlers": "@validate#handlers",
}
"""Where the engines take each section part from (MONAI's ``TrainProperties`` ``refer_id``)."""

INFER_IDS = ("network_def", "datalist", "preprocessing", "dataset", "dataloader", "inferer", "postprocessing",
             "handlers", "evaluator", "initialize", "run")
"""Ids of ``inference.json``."""

INFER_WIRING = {
    "dataset#transform": "@preprocessing",
    "dataloader#dataset": "@dataset",
    "evaluator#val_data_loader": "@dataloader",
    "evaluator#inferer": "@inferer",
    "evaluator#postprocessing": "@postprocessing",
    "evaluator#val_handlers": "@handlers",
}
"""Where the inference evaluator takes each part from (MONAI's ``InferProperties`` ``refer_id``)."""


INFERENCE_VARIANTS = {"brats_mri_uncertainty": ("tta.json",)}
"""Variant files merged onto ``inference.json`` only (they change its inferer), per bundle."""


def _variants(bundle: str) -> list[str]:
    """The training variants of a bundle: its config files other than the role files and the inference variants."""
    skip = set(ROLE_FILES) | set(INFERENCE_VARIANTS.get(bundle, ()))
    return sorted(p.name for p in (BUNDLES / bundle / "configs").glob("*.json") if p.name not in skip)


def _compositions(bundle: str) -> list[tuple[str, ...]]:
    """Every documented merge of ``train.json``: alone or with a variant, then evaluation or DDP on top."""
    bases = [("train.json",), *(("train.json", variant) for variant in _variants(bundle))]
    return [(*base, *extra) for base in bases for extra in ((), ("evaluate.json",), ("multi_gpu_train.json",))]


def _check(root: Path, files: tuple[str, ...], ids: tuple[str, ...], wiring: dict[str, str]) -> None:
    """Assert that the merge of ``root/configs/<files>`` has every id of ``ids`` and the ``wiring``.

    Raises:
        AssertionError: naming the bundle, the files and the first missing id or wrong reference.
    """
    parser = ConfigParser()
    parser.read_config([str(root / "configs" / name) for name in files])
    where = f"{root.name}: {' + '.join(files)}"
    for key in ids:
        assert key in parser, f"{where} has no id '{key}'"
    for key, reference in wiring.items():
        assert key in parser and parser[key] == reference, f"{where}: '{key}' should be '{reference}'"


@pytest.mark.parametrize("bundle", NAMES)
def test_train_and_evaluate_use_the_shared_ids(bundle):
    for files in _compositions(bundle):
        _check(BUNDLES / bundle, files, TRAIN_IDS, TRAIN_WIRING)


@pytest.mark.parametrize("bundle", NAMES)
def test_inference_uses_the_shared_ids(bundle):
    for variant in ((), *((name,) for name in INFERENCE_VARIANTS.get(bundle, ()))):
        _check(BUNDLES / bundle, ("inference.json", *variant), INFER_IDS, INFER_WIRING)


@pytest.mark.parametrize("bundle", NAMES)
def test_the_split_is_defined_once(bundle):
    """``datalists`` lives in ``train.json`` only; evaluation reads its sections instead of splitting again."""
    configs = BUNDLES / bundle / "configs"
    split = re.match(r"\$([\w.]+)\(", ConfigParser.load_config_file(str(configs / "train.json"))["datalists"])
    assert split is not None, f"{bundle}: train.json's 'datalists' is no call"
    for path in sorted(configs.glob("*.json")):
        if path.name != "train.json":
            config = ConfigParser.load_config_file(str(path))
            assert "datalists" not in config, f"{bundle}: {path.name} sets 'datalists'"
            assert split.group(1) not in path.read_text(), f"{bundle}: {path.name} calls {split.group(1)} again"


def test_a_missing_id_names_the_bundle_and_the_id(tmp_path):
    (tmp_path / "old_layout" / "configs").mkdir(parents=True)
    config = ConfigParser.load_config_file(str(BUNDLES / NAMES[0] / "configs" / "train.json"))
    config["val_inferer"] = config["validate"].pop("inferer")  # the BraTS bundle's former layout
    ConfigParser.export_config_file(config, str(tmp_path / "old_layout" / "configs" / "train.json"))
    with pytest.raises(AssertionError, match="old_layout: train.json has no id 'validate#inferer'"):
        _check(tmp_path / "old_layout", ("train.json",), TRAIN_IDS, TRAIN_WIRING)
