"""What MONAI Label's ``monaibundle`` app needs from every bundle, checked without MONAI Label.

The real server run is ``tests/integration/monailabel.sh`` (opt-in, see ``docs/monailabel.md``).
These checks mimic ``monailabel.tasks.infer.bundle.BundleInferTask``: it takes the first input and
output of ``network_data_format`` (``image``, ``pred``), names the label values by ``channel_def``,
runs ``preprocessing``, ``inferer`` and ``postprocessing`` without their ``SaveImaged`` steps, and
loads ``models/model.pt`` with ``torch.load`` (``weights_only``) and ``strict=False``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.transforms import EnsureChannelFirstd, LoadImaged
from PIL import Image

from tests.bundle_utils import BUNDLES
from tests.integration.monailabel_check import bundle_labels, monaibundle_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = sorted(p.name for p in BUNDLES.iterdir() if (p / "configs" / "inference.json").is_file())
# a small demo image per bundle, as the datastore holds it: suffix, (height, width[, depth]), channels
SAMPLES = {
    "brats_mri_uncertainty": (".nii.gz", (24, 20, 6), 4),
    "nerve_ultrasound_segmentation": (".tif", (42, 58), 1),
    "retina_vessel_segmentation": (".png", (40, 36), 3),
    "skin_lesion_segmentation": (".jpg", (30, 40), 3),
    "xray_multiclass_segmentation": (".png", (36, 28), 1),
}
# keep the pipelines tiny: fewer Monte-Carlo samples, smaller resize targets and patches
SMALL = {
    "brats_mri_uncertainty": {"num_samples": 2, "sample_batch": 2, "spatial_size": [16, 16]},
    "nerve_ultrasound_segmentation": {"spatial_size": [32, 32]},
    "retina_vessel_segmentation": {"patch_size": [32, 32]},
    "skin_lesion_segmentation": {"spatial_size": [32, 32]},
    "xray_multiclass_segmentation": {"spatial_size": [32, 32]},
}


def configs(name: str) -> Path:
    return BUNDLES / name / "configs"


def metadata(name: str) -> dict[str, Any]:
    return json.loads((configs(name) / "metadata.json").read_text())


def parser(name: str, config: str, **override: Any) -> ConfigParser:
    p = ConfigParser()
    p.read_config(str(configs(name) / config))
    p.update({"device": "$torch.device('cpu')", **override})
    return p


def write_sample(name: str, folder: Path) -> tuple[Path, tuple[int, ...]]:
    """A random demo image of the bundle's modality in ``folder``; returns its path and spatial shape."""
    suffix, shape, channels = SAMPLES[name]
    rng = np.random.default_rng(0)
    path = folder / f"sample{suffix}"
    if suffix == ".nii.gz":  # the four modalities stacked as one 4D volume, a brain-like box inside
        data = np.zeros((*shape, channels), np.float32)
        data[4:-4, 4:-4, 1:-1] = rng.uniform(100, 500, (shape[0] - 8, shape[1] - 8, shape[2] - 2, channels))
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    else:
        pixels = rng.integers(0, 256, (*shape, channels), dtype=np.uint8)
        Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(path)
    return path, shape


@pytest.mark.parametrize("name", NAMES)
def test_infer_workflow_has_every_required_property(name):
    workflow = ConfigWorkflow(
        config_file=str(configs(name) / "inference.json"),
        meta_file=str(configs(name) / "metadata.json"),
        logging_file=str(configs(name) / "logging.conf"),
        workflow_type="infer",
    )
    workflow.initialize()
    assert not workflow.check_properties()


@pytest.mark.parametrize("name", NAMES)
def test_network_data_format_names_image_pred_and_the_label_values(name):
    data_format = metadata(name)["network_data_format"]
    assert next(iter(data_format["inputs"])) == "image"
    key, pred = next(iter(data_format["outputs"].items()))  # the output MONAI Label serves
    assert key == "pred" and pred["format"] == "segmentation"
    labels = {int(k): v for k, v in pred["channel_def"].items()}
    assert labels[0] == "background" and len(labels) > 1, "channel_def names the label values, 0 background"


@pytest.mark.parametrize("name", NAMES)
def test_monaibundle_pipeline_returns_a_one_channel_label(name, tmp_path):
    """preprocessing -> inferer -> postprocessing (SaveImaged dropped) on a demo image, random weights."""
    path, shape = write_sample(name, tmp_path)
    pre = parser(name, "inference.json").get_parsed_content("preprocessing").transforms
    loaders = [t for t in pre if isinstance(t, LoadImaged)]  # MONAI Label loads each of their keys
    assert loaders and all(tuple(t.keys) == ("image",) for t in loaders), "top-level LoadImaged: image only"
    assert any(isinstance(t, EnsureChannelFirstd) or getattr(t, "_loader", None) and t._loader.ensure_channel_first
               for t in pre), "preprocessing puts the channel first"
    pred = monaibundle_pipeline(BUNDLES / name, path, **SMALL[name])["pred"]
    # MONAI Label's Restored drops a leading channel of one; a 2D bundle squeezes it itself (and
    # PILReader's (width, height) order is what MONAI Label's writer transposes back)
    assert tuple(pred.shape) == ((1, *shape) if len(shape) == 3 else shape[::-1])
    assert set(np.unique(np.asarray(pred)).astype(int)) <= set(bundle_labels(BUNDLES / name))


def model_saver_id(config: Any, prefix: str = "") -> str | None:
    """The id of the checkpoint saver that writes ``model.pt`` in a raw config, searched depth first."""
    if isinstance(config, dict) and str(config.get("_target_", "")).endswith("CheckpointSaver"):
        if "model.pt" in (config.get("key_metric_filename"), config.get("final_filename")):
            return prefix
    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else ()
    for key, item in items:
        found = model_saver_id(item, f"{prefix}#{key}" if prefix else str(key))
        if found is not None:
            return found
    return None


@pytest.mark.parametrize("name", NAMES)
def test_trained_model_loads_weights_only_and_strict(name, tmp_path):
    """train.json's saver writes a plain state_dict that inference.json's network_def loads strictly.

    MONAI Label loads with ``strict=False``: mismatched keys would silently serve random weights.
    """
    train = parser(name, "train.json", ckpt_dir=str(tmp_path))
    saver = model_saver_id(train.config)
    assert saver is not None and train[f"{saver}#save_dict"] == {"model": "@network"}  # one entry: plain
    train.update({f"{saver}#save_key_metric": False, f"{saver}#save_final": True,
                  f"{saver}#final_filename": "model.pt", f"{saver}#_disabled_": False})
    engine = Engine(lambda engine, batch: None)
    train.get_parsed_content(saver).attach(engine)
    engine.run([0], max_epochs=1)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    parser(name, "inference.json").get_parsed_content("network_def").load_state_dict(state, strict=True)
