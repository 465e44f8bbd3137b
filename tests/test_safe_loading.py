"""Checkpoints load with ``weights_only=True``; results are never overwritten without ``--overwrite true``."""

from __future__ import annotations

import json
import re

import pytest
import torch
from monai.handlers import CheckpointLoader

from monai_seg.data import make_demo
from monai_seg.handlers import ResumeCheckpointLoader
from monai_seg.utils import check_outputs
from tests.bundle_utils import BUNDLES, REPO, bundle_network, run_bundle
from tests.test_resume import error_in_chain

pytestmark = pytest.mark.usefixtures("one_thread")

NERVE = "nerve_ultrasound_segmentation"
CHANNELS = [16, 16, 16, 16, 16]
TINY = {"num_workers": 0, "batch_size": 2, "spatial_size": [32, 32], "network_def#channels": CHANNELS,
        "network_def#presence_grid": [2, 2]}
LOADERS = {"CheckpointLoader", "monai_seg.handlers.ResumeCheckpointLoader"}  # both torch.load(weights_only=True)


class _Payload:
    """Unpickling it calls ``open(flag, "w")``: any code could run instead."""

    def __init__(self, flag: str) -> None:
        self.flag = flag

    def __reduce__(self):
        return open, (self.flag, "w")


@pytest.fixture
def booby_trapped(tmp_path):
    """A checkpoint with valid weights plus a pickled object whose loading would create ``flag``."""
    net = torch.nn.Linear(2, 1)
    path, flag = tmp_path / "checkpoint.pt", tmp_path / "flag"
    torch.save({"network": net.state_dict(), "extra": _Payload(str(flag))}, path)
    return net, path, flag


def test_monai_checkpoint_loader_refuses_pickled_objects(booby_trapped):
    net, path, flag = booby_trapped
    with pytest.raises(Exception, match="weights_only|Unsupported global"):
        CheckpointLoader(str(path), {"network": net})(None)
    assert not flag.exists()  # the object was never built


def test_resume_loader_refuses_pickled_objects_with_the_path(booby_trapped):
    net, path, flag = booby_trapped
    with pytest.raises(ValueError, match=f"cannot resume from {re.escape(str(path))}"):
        ResumeCheckpointLoader(str(path), {"network": net})(None)
    assert not flag.exists()


def _config_items(value):
    """Every dict nested in a config value."""
    if isinstance(value, dict):
        yield value
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            yield from _config_items(item)


def test_every_checkpoint_path_loads_weights_only():
    configs = sorted(BUNDLES.glob("*/configs/*.json"))
    assert configs
    for path in configs:
        text = path.read_text()
        assert "torch.load(" not in text or text.count("torch.load(") == text.count("weights_only=True"), path
        for item in _config_items(json.loads(text)):
            target = str(item.get("_target_", ""))
            if "Loader" in target and "Checkpoint" in target:
                assert target in LOADERS, (path, target)
    for path in sorted((REPO / "monai_seg").rglob("*.py")):
        for call in re.findall(r"torch\.load\([^)]*\)", path.read_text()):
            assert "weights_only=True" in call, (path, call)


def test_check_outputs_names_the_path_and_the_flag(tmp_path):
    (tmp_path / "empty").mkdir()
    check_outputs([str(tmp_path / "empty"), str(tmp_path / "missing.csv"), str(tmp_path / "*_seg.nii.gz")], False)
    (tmp_path / "case1_seg.nii.gz").write_text("x")
    with pytest.raises(FileExistsError, match=r"case1_seg\.nii\.gz exists.*--overwrite true"):
        check_outputs([str(tmp_path / "*_seg.nii.gz")], False)
    check_outputs([str(tmp_path / "*_seg.nii.gz")], True)
    assert not (tmp_path / "case1_seg.nii.gz").exists()


@pytest.fixture(scope="module")
def nerve(tmp_path_factory):
    """Tiny nerve data and an untrained best model in the bundle's plain state_dict format."""
    root = tmp_path_factory.mktemp("nerve_outputs")
    data = make_demo("nerve", str(root / "data"), num_subjects=2, images_per_subject=2, num_test=2, size=(96, 64))
    (root / "models").mkdir()
    torch.save(bundle_network(NERVE, **TINY).state_dict(), root / "models" / "model.pt")
    return root, data


def test_inference_refuses_to_overwrite_a_submission(tmp_path, nerve):
    root, data = nerve
    args = {"dataset_dir": data, "checkpoint": str(root / "models" / "model.pt"), "output_dir": str(tmp_path), **TINY}
    run_bundle(NERVE, ["inference.json"], **args)
    before = (tmp_path / "submission.csv").read_text()
    (tmp_path / "submission.csv").write_text("an earlier result")
    with pytest.raises(Exception) as info:
        run_bundle(NERVE, ["inference.json"], **args)
    assert re.search(r"submission\.csv exists.*--overwrite true", str(error_in_chain(info.value, FileExistsError)))
    assert (tmp_path / "submission.csv").read_text() == "an earlier result"
    run_bundle(NERVE, ["inference.json"], overwrite="true", **args)  # as `--overwrite true` passes it
    assert (tmp_path / "submission.csv").read_text() == before


def test_evaluate_refuses_to_overwrite_its_report(tmp_path, nerve):
    root, data = nerve
    args = {"dataset_dir": data, "ckpt_dir": str(root / "models"), "output_dir": str(tmp_path), "val_fraction": 0.5,
            **TINY}
    run_bundle(NERVE, ["train.json", "evaluate.json"], **args)
    with pytest.raises(Exception) as info:
        run_bundle(NERVE, ["train.json", "evaluate.json"], **args)
    assert "metrics_per_image.csv exists" in str(error_in_chain(info.value, FileExistsError))
    run_bundle(NERVE, ["train.json", "evaluate.json"], overwrite=True, **args)
    assert (tmp_path / "metrics_summary.json").is_file()
