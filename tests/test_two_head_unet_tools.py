"""TwoHeadUNet's one-tensor output works with the stock MONAI tools that expect one spatial tensor."""

from __future__ import annotations

import json

import pytest
import torch
from monai.bundle import ckpt_export, verify_net_in_out
from monai.inferers import SlidingWindowInferer
from monai.networks import eval_mode
from monai.transforms import Activationsd

from monai_seg.networks import TwoHeadUNet

NET = {"_target_": "monai_seg.networks.TwoHeadUNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 1,
       "channels": [16, 32, 64], "presence_grid": [5, 7]}


@pytest.fixture
def net() -> TwoHeadUNet:
    torch.manual_seed(0)
    return TwoHeadUNet(2, 1, 1, channels=(16, 32, 64), presence_grid=(5, 7)).eval()


@pytest.fixture
def bundle_files(tmp_path):
    """A minimal bundle: the net as `network_def` and the metadata MONAI Label reads."""
    config = tmp_path / "inference.json"
    config.write_text(json.dumps({"network_def": NET}))
    meta = tmp_path / "metadata.json"
    meta.write_text(json.dumps({
        "version": "0.1.0",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "magnitude", "num_channels": 1,
                                 "spatial_shape": [80, 112], "dtype": "float32", "value_range": [],
                                 "is_patch_data": False, "channel_def": {"0": "image"}}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 2,
                                 "spatial_shape": [80, 112], "dtype": "float32", "value_range": [],
                                 "is_patch_data": False, "channel_def": {"0": "nerve", "1": "presence"}}},
        },
    }))
    return config, meta


def test_sliding_window_inferer_keeps_presence_channel(net):
    x = torch.randn(1, 1, 80, 112)
    with eval_mode(net):
        whole = net(x)
        # one window covering the image gives exactly the plain forward pass
        assert torch.allclose(SlidingWindowInferer(roi_size=(80, 112))(x, net), whole, atol=1e-5)
        tiled = SlidingWindowInferer(roi_size=(32, 48), overlap=0.5)(x, net)
    assert tiled.shape == whole.shape == (1, 2, 80, 112)


def test_activationsd_applies_to_both_heads(net):
    with eval_mode(net):
        pred = net(torch.randn(1, 1, 80, 112))[0]
    out = Activationsd(keys="pred", sigmoid=True)({"pred": pred})["pred"]
    assert torch.allclose(out, torch.sigmoid(pred))
    assert out.min() >= 0 and out.max() <= 1


def test_verify_net_in_out(bundle_files):
    config, meta = bundle_files
    verify_net_in_out(net_id="network_def", meta_file=str(meta), config_file=str(config), device="cpu")
    wrong = json.loads(meta.read_text())
    wrong["network_data_format"]["outputs"]["pred"]["num_channels"] = 1  # forgetting the presence channel
    meta.write_text(json.dumps(wrong))
    with pytest.raises(ValueError, match="output channel number `2`"):
        verify_net_in_out(net_id="network_def", meta_file=str(meta), config_file=str(config), device="cpu")


def test_ckpt_export_reproduces_checkpoint(bundle_files, net, tmp_path):
    config, meta = bundle_files
    ckpt = tmp_path / "model.pt"
    torch.save(net.state_dict(), ckpt)
    ts = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(ts), ckpt_file=str(ckpt), meta_file=str(meta),
                config_file=str(config))
    exported = torch.jit.load(str(ts))
    x = torch.randn(2, 1, 80, 112)
    with eval_mode(net):
        assert torch.allclose(exported(x), net(x), atol=1e-6)


def test_monai_label_first_output_keeps_both_heads(net):
    """MONAI Label keeps only ``outputs[0]`` of a tuple/list output; one tensor reaches postprocessing whole."""
    x = torch.randn(1, 1, 80, 112)
    with eval_mode(net):
        outputs = SlidingWindowInferer(roi_size=(80, 112))(x, net)
        expected = net(x)
    kept = outputs[0] if isinstance(outputs, (tuple, list)) else outputs  # MONAI Label's reduction
    assert kept.shape == (1, 2, 80, 112)
    assert torch.allclose(kept[:, -1], expected[:, -1], atol=1e-5)  # the presence logit survives
