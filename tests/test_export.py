"""TorchScript (``ckpt_export``) and ONNX (``monai_seg.export.onnx_export``) round trips of every bundle's network.

A tiny untrained network per bundle is saved as a checkpoint, exported through the bundle functions, loaded back
(``torch.jit.load``, ``onnxruntime.InferenceSession``) and compared with the PyTorch network on random inputs of
batch 1 and 2 (the batch axis is dynamic): TorchScript within atol 1e-5 / rtol 1e-4, ONNX Runtime within atol 1e-4 /
rtol 1e-3. Both files carry the bundle's ``metadata.json`` and ``inference.json``.
"""

from __future__ import annotations

import json

import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export

from monai_seg.export import onnx_export, read_onnx_metadata
from tests.bundle_utils import config_files

ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.usefixtures("one_thread")

# bundle: (network_def overrides of a tiny net, input shape [1, C, *spatial])
CASES = {
    "brats_mri_uncertainty": ({"network_def#channels": [8, 16, 32], "network_def#blocks": [1, 1, 1]}, [1, 4, 32, 32]),
    "nerve_ultrasound_segmentation": ({"network_def#channels": [16, 32, 64, 128, 256]}, [1, 1, 112, 80]),
    "retina_vessel_segmentation": ({"network_def#channels": [4, 8, 16, 32, 64]}, [1, 3, 32, 48]),
    "skin_lesion_segmentation": ({"network_def#channels": [4, 8, 16, 32, 64]}, [1, 3, 32, 32]),
    "xray_multiclass_segmentation": ({"network_def#features": [4, 4, 8, 16, 32, 4]}, [1, 1, 32, 32]),
}
TS_TOL = {"atol": 1e-5, "rtol": 1e-4}
ONNX_TOL = {"atol": 1e-4, "rtol": 1e-3}


@pytest.mark.parametrize("bundle", sorted(CASES))
def test_export_round_trips(bundle, tmp_path):
    override, shape = CASES[bundle]
    meta, inference = config_files(bundle, "metadata.json", "inference.json")
    parser = ConfigParser()
    parser.read_config(inference)
    parser.update(override)
    net = parser.get_parsed_content("network_def").eval()
    ckpt = tmp_path / "model.pt"
    torch.save(net.state_dict(), ckpt)
    files = {"net_id": "network_def", "ckpt_file": str(ckpt), "meta_file": meta, "config_file": inference}
    expected_meta = {
        "metadata.json": ConfigParser.load_config_file(meta), "inference.json": ConfigParser.load_config_file(inference)
    }

    ckpt_export(filepath=str(tmp_path / "model.ts"), **files, **override)
    extra = dict.fromkeys(expected_meta, "")
    ts = torch.jit.load(str(tmp_path / "model.ts"), _extra_files=extra)
    assert {k: json.loads(v) for k, v in extra.items()} == expected_meta

    onnx_export(filepath=str(tmp_path / "model.onnx"), input_shape=shape, **files, **override)
    assert read_onnx_metadata(str(tmp_path / "model.onnx")) == expected_meta
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"] and [o.name for o in session.get_outputs()] == ["pred"]

    for batch in (1, 2):
        x = torch.randn(batch, *shape[1:])
        with torch.no_grad():
            expected = net(x)
            torch.testing.assert_close(ts(x), expected, **TS_TOL)
        (onnx_out,) = session.run(None, {"image": x.numpy()})
        torch.testing.assert_close(torch.from_numpy(onnx_out), expected, **ONNX_TOL)
