"""MCDropoutInferer: modes, seeds, map formulas, chunking, sliding windows, evaluator and bundle use."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn as nn
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.handlers import IgniteMetricHandler, from_engine
from monai.inferers import SlidingWindowInferer
from monai.networks.nets import UNet
from monai.transforms import AsDiscreted, Compose, CopyItemsd, EnsureChannelFirstd, LoadImaged, SaveImaged
from PIL import Image

from monai_seg.inferers import MCDropoutInferer, mc_dropout_mode, uncertainty_channels, uncertainty_num_classes
from monai_seg.metrics import UncertaintyErrorAUROCMetric
from monai_seg.transforms.uncertainty import SplitUncertaintyd

DOCS = Path(__file__).resolve().parents[1] / "docs" / "uncertainty.md"


pytestmark = pytest.mark.usefixtures("one_thread")


def small_net(out_channels: int = 1) -> nn.Module:
    """conv-BN-ReLU, dropout, 1x1 head: BatchNorm to watch, dropout to sample."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout2d(0.3), nn.Conv2d(8, out_channels, 1)
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


def reference_maps(net: nn.Module, x: torch.Tensor, num_samples: int, seed: int, activation: str) -> dict:
    """Hand computation from an explicit loop of samples, drawn like ``sample_batch=1`` draws them."""
    with mc_dropout_mode(net):
        torch.manual_seed(seed)
        logits = torch.stack([net(x) for _ in range(num_samples)]).double()
    p = logits.sigmoid() if activation == "sigmoid" else logits.softmax(dim=2)

    def entropy(q: torch.Tensor, dim: int) -> torch.Tensor:
        if activation == "sigmoid":
            return -(q * q.log() + (1 - q) * (1 - q).log())
        return -(q * q.log()).sum(dim, keepdim=True)

    mean = p.mean(0)
    return {
        "mean": mean,
        "std": p.std(0, correction=0),
        "entropy": entropy(mean, 1),
        "mutual_info": entropy(mean, 1) - entropy(p, 2).mean(0),
    }


@pytest.mark.parametrize("activation,out_channels", [("sigmoid", 2), ("softmax", 3)])
def test_maps_match_hand_computation(activation: str, out_channels: int) -> None:
    net = small_net(out_channels)
    x = torch.randn(2, 1, 12, 12)
    out = MCDropoutInferer(6, activation=activation, sample_batch=1, seed=3, prefix_sampling=False)(x, net)
    expected = reference_maps(net, x, 6, 3, activation)
    layout = uncertainty_channels(out_channels, activation)
    assert out.shape == (2, sum(s.stop - s.start for s in layout.values()), 12, 12)
    for name, channels in layout.items():
        torch.testing.assert_close(out[:, channels].double(), expected[name], atol=1e-6, rtol=1e-5)
    assert (out[:, layout["std"]] > 0).any() and (out[:, layout["mutual_info"]] > 0).any()


@pytest.mark.parametrize("activation,out_channels", [("sigmoid", 2), ("softmax", 3)])
def test_one_sample_is_one_stochastic_pass(activation: str, out_channels: int) -> None:
    """T = 1: the pass's probabilities and entropy, no spread (std and mutual information zero)."""
    net = small_net(out_channels)
    x = torch.randn(2, 1, 12, 12)
    out = MCDropoutInferer(1, activation=activation, seed=3, prefix_sampling=False)(x, net)
    expected = reference_maps(net, x, 1, 3, activation)
    layout = uncertainty_channels(out_channels, activation)
    for name in ("mean", "entropy"):
        torch.testing.assert_close(out[:, layout[name]].double(), expected[name], atol=1e-6, rtol=1e-5)
    assert (out[:, layout["entropy"]] > 0).all()
    assert not out[:, layout["std"]].any() and out[:, layout["mutual_info"]].abs().max() < 1e-6
    with torch.no_grad():
        deterministic = net.eval()(x)
    probs = deterministic.sigmoid() if activation == "sigmoid" else deterministic.softmax(1)
    assert not torch.allclose(out[:, layout["mean"]], probs, atol=1e-4)  # dropout did sample


def test_entropy_values_in_nats() -> None:
    """A dropout that zeroes the logit half of the time: p is 0.5 or sigmoid(2)."""
    net = nn.Sequential(nn.Dropout(0.5)).eval()
    x = torch.ones(1, 1, 1, 1)  # scaled by 1 / (1 - p): logit 0 or 2
    out = MCDropoutInferer(400, sample_batch=400, seed=0)(x, net)
    p_hi = torch.sigmoid(torch.tensor(2.0, dtype=torch.float64))
    frac = (out[0, 0, 0, 0].double() - 0.5) / (p_hi - 0.5)  # fraction of samples kept
    mean = 0.5 + frac * (p_hi - 0.5)

    def h(q: torch.Tensor) -> torch.Tensor:
        return -(q * q.log() + (1 - q) * (1 - q).log())

    assert abs(frac.item() - 0.5) < 0.1
    torch.testing.assert_close(out[0, 2, 0, 0].double(), h(mean), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[0, 3, 0, 0].double(), h(mean) - (frac * h(p_hi) + (1 - frac) * math.log(2)),
                               atol=1e-6, rtol=0)


def test_layout_round_trip() -> None:
    assert uncertainty_channels(2, "softmax") == {
        "mean": slice(0, 2), "std": slice(2, 4), "entropy": slice(4, 5), "mutual_info": slice(5, 6)
    }
    assert uncertainty_channels(3, "sigmoid", ("mean", "entropy"))["entropy"] == slice(3, 6)
    assert uncertainty_num_classes(12, "sigmoid") == 3
    assert uncertainty_num_classes(10, "softmax") == 4
    for channels, activation in ((7, "sigmoid"), (9, "softmax")):
        with pytest.raises(ValueError):
            uncertainty_num_classes(channels, activation)
    with pytest.raises(ValueError):
        MCDropoutInferer(maps=("mean", "variance"))
    with pytest.raises(ValueError):
        MCDropoutInferer(num_samples=0)


def test_only_dropout_switched_and_modes_restored() -> None:
    net = small_net()
    net[0].train()  # mixed modes: conv says train, the rest eval
    before = [m.training for m in net.modules()]
    stats = net[1].running_mean.clone(), net[1].running_var.clone()
    seen = []
    net[1].register_forward_hook(lambda m, i, o: seen.append(("bn", m.training)))
    net[3].register_forward_hook(lambda m, i, o: seen.append(("dropout", m.training)))
    MCDropoutInferer(4, sample_batch=2, seed=0)(torch.randn(1, 1, 8, 8), net)
    assert ("bn", True) not in seen and ("dropout", True) in seen  # dropout is off only in the prefix check
    assert [m.training for m in net.modules()] == before
    torch.testing.assert_close((net[1].running_mean, net[1].running_var), stats, atol=0, rtol=0)


def test_modes_restored_when_network_raises() -> None:
    class Failing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = small_net()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.body(x)
            raise RuntimeError("boom")

    net = Failing().train()
    with pytest.raises(RuntimeError, match="boom"):
        MCDropoutInferer(3, sample_batch=1)(torch.randn(1, 1, 8, 8), net)
    assert all(m.training for m in net.modules())


@pytest.mark.parametrize(
    "net",
    [
        nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)),  # no dropout
        nn.Sequential(nn.Conv2d(1, 1, 1), nn.Dropout(0.0)),  # dropout with p = 0 (MONAI's default)
    ],
)
def test_no_dropout_is_an_error(net: nn.Module) -> None:
    with pytest.raises(ValueError, match="no dropout layer"):
        MCDropoutInferer(3)(torch.randn(1, 1, 4, 4), net)


def test_unused_dropout_is_an_error() -> None:
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.drop = nn.Conv2d(1, 1, 1), nn.Dropout(0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    with pytest.raises(ValueError, match="dropout"):
        MCDropoutInferer(3, prefix_sampling=False)(torch.randn(1, 1, 4, 4), Unused())
    with pytest.raises(ValueError, match="dropout"):
        MCDropoutInferer(3)(torch.randn(1, 1, 4, 4), Unused())


def test_seed_reproducible_and_global_rng_untouched() -> None:
    net, x = small_net(), torch.randn(1, 1, 10, 10)
    inferer = MCDropoutInferer(8, seed=7)  # auto chunking
    state = torch.get_rng_state()
    first, second = inferer(x, net), inferer(x, net)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, second)
    fixed = MCDropoutInferer(8, sample_batch=3, seed=7)
    assert torch.equal(fixed(x, net), MCDropoutInferer(8, sample_batch=3, seed=7)(x, net))
    assert not torch.equal(MCDropoutInferer(8, sample_batch=3, seed=8)(x, net), fixed(x, net))


def test_chunks_follow_repeat_layout() -> None:
    """sample_batch=k evaluates net(x.repeat(k)) per chunk: T=7, k=3 -> chunks 3, 3, 1."""
    net, x = small_net(), torch.randn(2, 1, 8, 8)
    out = MCDropoutInferer(7, sample_batch=3, seed=5, prefix_sampling=False, maps=("mean", "std"))(x, net)
    with mc_dropout_mode(net):
        torch.manual_seed(5)
        chunks = [net(x.repeat(k, 1, 1, 1)).sigmoid().double().view(k, 2, 1, 8, 8) for k in (3, 3, 1)]
    p = torch.cat(chunks)
    torch.testing.assert_close(out.double(), torch.cat([p.mean(0), p.std(0, correction=0)], 1), atol=1e-6, rtol=0)


def test_chunk_sizes_agree_in_distribution() -> None:
    net, x = small_net(), torch.randn(1, 1, 8, 8)
    loop = MCDropoutInferer(300, sample_batch=1, seed=0)(x, net)
    batched = MCDropoutInferer(300, sample_batch=300, seed=1)(x, net)
    assert (loop - batched).abs().mean() < 0.01


def test_auto_chunking_is_fixed_per_window_shape() -> None:
    net = small_net()
    inferer = MCDropoutInferer(6, seed=0)
    inferer(torch.randn(2, 1, 8, 8), net)
    inferer(torch.randn(1, 1, 8, 8), net)
    inferer(torch.randn(1, 1, 12, 8), net)
    tuned = inferer.tuned_sample_batch(net)
    assert set(tuned) == {((1, 8, 8), torch.float32, "cpu"), ((1, 12, 8), torch.float32, "cpu")}
    assert set(tuned.values()) <= {1, 6}


def test_sliding_window_3d_composition() -> None:
    torch.manual_seed(0)
    net = UNet(3, 1, 2, (4, 8), (2,), dropout=0.2).eval()
    image = MetaTensor(torch.randn(1, 1, 20, 18, 16), affine=torch.diag(torch.tensor([2.0, 1.5, 1.0, 1.0])))
    inner = SlidingWindowInferer((12, 12, 12), sw_batch_size=2, overlap=0.5)
    out = MCDropoutInferer(5, inner=inner, sample_batch=5, seed=0)(image, net)
    assert isinstance(out, MetaTensor) and out.shape == (1, 8, 20, 18, 16) and out.dtype == torch.float32
    torch.testing.assert_close(out.affine, image.affine)
    layout = uncertainty_channels(2)
    assert (out[:, layout["std"]] > 0).all() and (out[:, layout["mean"]] <= 1).all()
    # one window covering the image is the same computation as no inner inferer
    whole = MCDropoutInferer(5, inner=SlidingWindowInferer((20, 18, 16)), sample_batch=5, seed=0)(image, net)
    plain = MCDropoutInferer(5, sample_batch=5, seed=0)(image, net)
    torch.testing.assert_close(whole.as_tensor(), plain.as_tensor(), atol=2e-5, rtol=1e-4)  # conv rounding


def test_split_transform_keys_and_normalisation() -> None:
    out = MetaTensor(torch.rand(4 * 2, 6, 5), affine=torch.diag(torch.tensor([3.0, 2.0, 1.0, 1.0])))
    d = SplitUncertaintyd("pred", activation="sigmoid")({"pred": out})
    assert set(d) == {"pred", "pred_std", "pred_entropy", "pred_mutual_info"}
    torch.testing.assert_close(d["pred_entropy"].as_tensor(), out[4:6].as_tensor())
    assert all(torch.equal(d[k].affine, out.affine) for k in d)
    raw = torch.rand(3 + 3 + 1 + 1, 4, 4)  # softmax, 3 classes
    soft = SplitUncertaintyd("pred", activation="softmax", normalize=True)({"pred": raw})
    assert soft["pred"].shape == (3, 4, 4) and soft["pred_entropy"].shape == (1, 4, 4)
    torch.testing.assert_close(soft["pred_std"], raw[3:6] / 0.5)
    torch.testing.assert_close(soft["pred_mutual_info"], raw[7:] / math.log(3))


def test_supervised_evaluator_thresholds_mean_and_saves_maps(tmp_path: Path) -> None:
    """The single-tensor output through SupervisedEvaluator, decollate, postprocessing, metrics and SaveImaged."""
    net = small_net()
    affine = np.diag([0.5, 0.7, 1.0, 1.0])
    items = []
    for i in range(2):
        path = tmp_path / f"case{i}.nii.gz"
        nib.save(nib.Nifti1Image(np.random.rand(16, 12).astype(np.float32), affine), path)
        items.append({"image": str(path), "label": np.random.rand(1, 16, 12) > 0.5})
    loader = DataLoader(Dataset(items, Compose([LoadImaged("image"), EnsureChannelFirstd("image")])), batch_size=2)
    save = {
        name: SaveImaged(f"pred_{name}", output_dir=tmp_path / "out", output_postfix=name, separate_folder=False)
        for name in ("std", "entropy", "mutual_info")
    }
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=loader,
        network=net,
        inferer=MCDropoutInferer(4, seed=0),
        postprocessing=Compose(
            [
                CopyItemsd("pred", names="mc"),  # the metric reads the unsplit output
                SplitUncertaintyd("pred"),
                *save.values(),
                AsDiscreted("pred", threshold=0.5),
            ]
        ),
        key_val_metric={
            "auroc": IgniteMetricHandler(
                UncertaintyErrorAUROCMetric("entropy"), output_transform=from_engine(["mc", "label"])
            )
        },
    )
    net.train()
    evaluator.run()
    assert net.training and all(m.training for m in net.modules())
    assert 0.0 <= evaluator.state.metrics["auroc"] <= 1.0
    assert set(evaluator.state.output[0]["pred"].unique().tolist()) <= {0.0, 1.0}
    for name in save:
        written = nib.load(tmp_path / "out" / f"case0_{name}.nii.gz")
        np.testing.assert_allclose(written.affine, affine)
        assert written.shape == (16, 12)


def test_png_maps_for_2d_inputs(tmp_path: Path) -> None:
    out = MCDropoutInferer(4, seed=0)(torch.randn(1, 1, 8, 8), small_net())[0]
    out = MetaTensor(out, meta={"filename_or_obj": "img.png"})
    d = SplitUncertaintyd("pred", normalize=True)({"pred": out})
    SaveImaged("pred_std", output_dir=tmp_path, output_ext=".png", output_postfix="std", scale=255,
               separate_folder=False)(d)
    png = np.asarray(Image.open(tmp_path / "img_std.png"))
    assert png.shape == (8, 8) and png.dtype == np.uint8 and png.max() > 0


def test_documented_bundle_config_runs(tmp_path: Path) -> None:
    """The inference config in docs/uncertainty.md, with a tiny net and window, writes every map next to the mask."""
    block = re.search(r"```json\n(.*?)```", DOCS.read_text(), re.S)
    assert block is not None, "docs/uncertainty.md lost its example config"
    config = json.loads(block.group(1))
    (tmp_path / "models").mkdir()
    (tmp_path / "data").mkdir()
    affine = np.diag([1.2, 1.0, 0.8, 1.0])
    nib.save(nib.Nifti1Image(np.random.rand(20, 18, 14).astype(np.float32), affine), tmp_path / "data" / "case.nii.gz")
    parser = ConfigParser(config)
    parser["bundle_root"] = str(tmp_path)
    parser["dataset_dir"] = str(tmp_path / "data")
    parser["network_def"] = {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 1,
                             "channels": [4, 8], "strides": [2], "dropout": 0.2}
    parser["inferer"]["num_samples"] = 3
    parser["inferer"]["inner"]["roi_size"] = [16, 16, 16]
    torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "models" / "model.pt")
    parser.get_parsed_content("evaluator").run()
    out = tmp_path / "eval"
    for postfix in ("seg", "std", "entropy", "mutual_info"):
        written = nib.load(out / "case" / f"case_{postfix}.nii.gz")
        np.testing.assert_allclose(written.affine, affine, atol=1e-5)
        assert written.shape == (20, 18, 14)
