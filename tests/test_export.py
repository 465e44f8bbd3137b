"""ONNX (``monai_seg.export.onnx_export``) round trip of every bundle's network.

A tiny untrained network per bundle is saved as a checkpoint, exported, loaded back (``onnxruntime.InferenceSession``)
and compared with the PyTorch network on random inputs of batch 1 and 2 (the batch axis is dynamic) within atol 1e-4 /
rtol 1e-3. The file carries the bundle's ``metadata.json`` and ``inference.json``. The TorchScript round trip
(``ckpt_export``) is one of the model zoo's checks, in ``tests/test_zoo_checks.py``.
"""

from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser

from monai_seg.export import onnx_export, read_onnx_metadata
from tests.bundle_utils import TINY_NETS, config_files

ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.usefixtures("one_thread")

ONNX_TOL = {"atol": 1e-4, "rtol": 1e-3}


@pytest.mark.parametrize("bundle", sorted(TINY_NETS))
def test_export_round_trips(bundle, tmp_path):
    override, shape = TINY_NETS[bundle]
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

    onnx_export(filepath=str(tmp_path / "model.onnx"), input_shape=shape, **files, **override)
    assert read_onnx_metadata(str(tmp_path / "model.onnx")) == expected_meta
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"] and [o.name for o in session.get_outputs()] == ["pred"]

    for batch in (1, 2):
        x = torch.randn(batch, *shape[1:])
        with torch.no_grad():
            expected = net(x)
        (onnx_out,) = session.run(None, {"image": x.numpy()})
        torch.testing.assert_close(torch.from_numpy(onnx_out), expected, **ONNX_TOL)
