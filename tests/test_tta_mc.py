"""TTAMCDropoutInferer: the naive double loop, MC-dropout as a special case, exact inverses, bounds, sliding
windows and the BraTS bundle's TTA overlay."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn as nn
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer
from monai.networks.nets import UNet

from monai_seg.data import load_datalist, make_demo
from monai_seg.inferers import (
    MAP_NAMES,
    TTA_MAPS,
    AffineAugmentation,
    FlipAugmentation,
    IdentityAugmentation,
    MCDropoutInferer,
    TTAMCDropoutInferer,
    mc_dropout_mode,
    uncertainty_channels,
)
from monai_seg.transforms import SplitUncertaintyd
from tests.bundle_utils import bundle_network, run_bundle

pytestmark = pytest.mark.usefixtures("one_thread")

AUGMENTATIONS = [
    IdentityAugmentation(),
    FlipAugmentation(0),
    FlipAugmentation([0, 1]),
    AffineAugmentation(rotate=0.2, scale=1.1),
]


def small_net(out_channels: int = 2) -> nn.Module:
    """conv-BN-ReLU, dropout, 1x1 head: a deterministic prefix and a stochastic suffix."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout2d(0.3), nn.Conv2d(8, out_channels, 1)
    ).eval()


def entropy(p: torch.Tensor, activation: str, dim: int) -> torch.Tensor:
    if activation == "sigmoid":
        return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p))
    return -torch.special.xlogy(p, p).sum(dim, keepdim=True)


def naive_double_loop(net: nn.Module, x: torch.Tensor, augmentations: list, num_samples: int, seed: int,
                      activation: str) -> dict[str, torch.Tensor]:
    """for a: for t: invert_a(activation(net(a(x)))) with dropout on, then the maps from the (A, T) samples."""
    with mc_dropout_mode(net):
        torch.manual_seed(seed)
        logits = [[a.inverse(net(a(x))) for _ in range(num_samples)] for a in augmentations]
    p = torch.stack([torch.stack(row) for row in logits]).double()  # (A, T, B, C, ...)
    p = p.sigmoid() if activation == "sigmoid" else p.softmax(dim=3)
    mean, per_aug = p.mean((0, 1)), p.mean(1)
    expected = entropy(p, activation, 3).mean((0, 1))
    return {
        "mean": mean,
        "std": p.flatten(0, 1).std(0, correction=0),
        "entropy": entropy(mean, activation, 1),
        "mutual_info": (entropy(per_aug, activation, 2) - entropy(p, activation, 3).mean(1)).mean(0),
        "expected_entropy": expected,
        "tta_std": per_aug.std(0, correction=0),
    }


@pytest.mark.parametrize("activation,out_channels", [("sigmoid", 2), ("softmax", 3)])
def test_equals_the_naive_double_loop(activation: str, out_channels: int) -> None:
    """Same dropout masks (same seed, one sample per call) -> the same maps as the double loop, per sample inverted."""
    net, x = small_net(out_channels), torch.randn(2, 1, 12, 12)
    expected = naive_double_loop(net, x, AUGMENTATIONS, 4, seed=3, activation=activation)
    layout = uncertainty_channels(out_channels, activation, MAP_NAMES)
    for prefix_sampling in (False, True):
        inferer = TTAMCDropoutInferer(4, AUGMENTATIONS, activation=activation, maps=MAP_NAMES, sample_batch=1,
                                      seed=3, prefix_sampling=prefix_sampling)
        out = inferer(x, net)
        for name, channels in layout.items():
            torch.testing.assert_close(out[:, channels].double(), expected[name], atol=1e-6, rtol=1e-5)
    assert inferer.prefix_split(net) is not None
    assert (out[:, layout["tta_std"]] > 0).any() and (out[:, layout["mutual_info"]] > 0).any()


def test_prefix_runs_once_per_augmentation() -> None:
    net, x = small_net(), torch.randn(1, 1, 10, 10)
    inferer = TTAMCDropoutInferer(5, AUGMENTATIONS, sample_batch=5, seed=0)
    inferer(x, net)  # the first call verifies the split
    calls = []
    handle = net[0].register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    inferer(x, net)
    handle.remove()
    assert calls == [1] * len(AUGMENTATIONS)  # the first conv: once per augmentation, batch 1, not per sample


def test_identity_augmentation_is_mc_dropout() -> None:
    net, x = small_net(), torch.randn(2, 1, 12, 12)
    maps = ("mean", "std", "entropy", "mutual_info", "expected_entropy")
    mc = MCDropoutInferer(6, maps=maps, sample_batch=2, seed=1)(x, net)
    tta = TTAMCDropoutInferer(6, [IdentityAugmentation()], maps=(*maps, "tta_std"), sample_batch=2, seed=1)(x, net)
    assert torch.equal(tta[:, : mc.shape[1]], mc) and not tta[:, mc.shape[1] :].any()
    layout = uncertainty_channels(2, "sigmoid", maps)
    torch.testing.assert_close(mc[:, layout["entropy"]] - mc[:, layout["mutual_info"]],
                               mc[:, layout["expected_entropy"]], atol=1e-6, rtol=0)


class FixedDropout(nn.Dropout):
    """A 'dropout' that scales deterministically in train mode: every sample equal, the spread is only TTA's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1 - self.p) if self.training else x


@pytest.mark.parametrize("kernel", [1, 3])
def test_flips_and_quarter_turns_are_inverted_exactly(kernel: int) -> None:
    """A flip- and rotation-equivariant net (1x1 convolutions) has zero TTA spread; a 3x3 one does not."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, kernel, padding=kernel // 2), FixedDropout(0.5), nn.Conv2d(4, 1, 1)).eval()
    x = torch.randn(1, 1, 9, 9)
    augmentations = [IdentityAugmentation(), FlipAugmentation(0), FlipAugmentation(1), FlipAugmentation((0, 1)),
                     AffineAugmentation(rotate=math.pi / 2)]  # a quarter turn of a square grid: exact
    out = TTAMCDropoutInferer(2, augmentations, maps=("mean", "tta_std"), seed=0)(x, net)
    with mc_dropout_mode(net):
        p = net(x).sigmoid()
    if kernel == 1:
        torch.testing.assert_close(out[:, :1], p, atol=1e-6, rtol=0)
        assert out[:, 1].max() < 1e-6
    else:
        assert out[:, 1].max() > 1e-3


@pytest.mark.parametrize("activation,out_channels", [("sigmoid", 2), ("softmax", 3)])
def test_maps_are_bounded(activation: str, out_channels: int) -> None:
    net, x = small_net(out_channels), 3 * torch.randn(2, 1, 12, 12)
    out = TTAMCDropoutInferer(5, AUGMENTATIONS, activation=activation, maps=MAP_NAMES, seed=0)(x, net)
    m = {name: out[:, s] for name, s in uncertainty_channels(out_channels, activation, MAP_NAMES).items()}
    top = math.log(2) if activation == "sigmoid" else math.log(out_channels)
    assert all((v >= 0).all() for v in m.values())
    assert m["mean"].max() <= 1 and m["std"].max() <= 0.5 and m["tta_std"].max() <= 0.5
    assert m["entropy"].max() <= top + 1e-6
    assert (m["mutual_info"] + m["expected_entropy"] <= m["entropy"] + 1e-6).all()  # the rest is TTA's part
    assert (m["tta_std"] <= m["std"] + 1e-6).all()


@pytest.mark.parametrize("spatial_dims,shape,roi", [(2, (30, 26), (16, 16)), (3, (20, 18, 16), (12, 12, 12))])
def test_sliding_windows_2d_and_3d(spatial_dims: int, shape: tuple, roi: tuple) -> None:
    torch.manual_seed(0)
    net = UNet(spatial_dims, 1, 1, (4, 8), (2,), dropout=0.2).eval()
    affine = torch.diag(torch.tensor([2.0, 1.5, 1.0, 1.0]))
    image = MetaTensor(torch.randn(1, 1, *shape), affine=affine)
    rotate = 0.15 if spatial_dims == 2 else (0.0, 0.0, 0.15)
    augmentations = [IdentityAugmentation(), FlipAugmentation(0), AffineAugmentation(rotate=rotate)]
    inner = SlidingWindowInferer(roi, sw_batch_size=2, overlap=0.5)
    out = TTAMCDropoutInferer(3, augmentations, inner=inner, sample_batch=3, seed=0)(image, net)
    assert isinstance(out, MetaTensor) and out.shape == (1, len(TTA_MAPS), *shape)
    torch.testing.assert_close(out.affine, image.affine)
    assert (out >= 0).all() and out[:, 1:4].max() <= math.log(2) + 1e-6 and (out[:, 4] > 0).all()
    # one window covering the image is the same computation as no inner inferer
    whole = TTAMCDropoutInferer(3, augmentations, inner=SlidingWindowInferer(shape), sample_batch=3, seed=0)
    plain = TTAMCDropoutInferer(3, augmentations, sample_batch=3, seed=0)
    torch.testing.assert_close(whole(image, net).as_tensor(), plain(image, net).as_tensor(), atol=2e-5, rtol=1e-4)


def test_default_augmentations_and_checks() -> None:
    inferer = TTAMCDropoutInferer(2)
    assert [type(a).__name__ for a in inferer.augmentations_for(3)] == ["IdentityAugmentation"] + [
        "FlipAugmentation"
    ] * 3
    assert uncertainty_channels(3, "softmax", TTA_MAPS) == {
        "mean": slice(0, 3), "entropy": slice(3, 4), "mutual_info": slice(4, 5), "expected_entropy": slice(5, 6),
        "tta_std": slice(6, 9),
    }
    out = MetaTensor(torch.rand(5 * 2, 4, 4))
    assert set(SplitUncertaintyd("pred", maps=TTA_MAPS)({"pred": out})) == {
        "pred", "pred_entropy", "pred_mutual_info", "pred_expected_entropy", "pred_tta_std"
    }
    for bad in (lambda: TTAMCDropoutInferer(2, []), lambda: MCDropoutInferer(2, maps=("mean", "tta_std")),
                lambda: FlipAugmentation([]), lambda: AffineAugmentation(scale=0.0),
                lambda: AffineAugmentation(rotate=(0.1, 0.2))(torch.zeros(1, 1, 4, 4))):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError, match="spatial axes"):
        FlipAugmentation(2)(torch.zeros(1, 1, 4, 4))


def test_brats_tta_overlay_writes_the_maps_on_the_input_grid(tmp_path) -> None:
    """inference.json + tta.json: the four TTA maps next to the segmentation, with the input's shape and affine."""
    data = make_demo("brats", str(tmp_path / "data"), num_cases=1, shape=(40, 40, 6))
    net = {"network_def#channels": [8, 16], "network_def#blocks": [1, 1]}
    checkpoint = tmp_path / "model.pt"
    torch.save(bundle_network("brats_mri_uncertainty", **net).state_dict(), checkpoint)
    run_bundle("brats_mri_uncertainty", ["inference.json", "tta.json"], dataset_dir=data, checkpoint=str(checkpoint),
               output_dir=str(tmp_path / "out"), num_workers=0, spatial_size=[16, 16], num_samples=2, sample_batch=2,
               **{"inferer#inner#prefix_sampling": False}, **net)
    item = load_datalist("brats", data, validate=False)[0]
    flair = nib.load(item["image"][0])
    for name in ("seg", "std", "entropy", "mutual_info", "expected_entropy", "tta_std"):
        written = nib.load(tmp_path / "out" / f"{item['case']}_{name}.nii.gz")
        assert written.shape == flair.shape, name
        np.testing.assert_allclose(written.affine, flair.affine, atol=1e-5)
    tta_std = nib.load(tmp_path / "out" / f"{item['case']}_tta_std.nii.gz").get_fdata()
    assert 0 <= tta_std.min() and 0 < tta_std.max() <= 0.5
