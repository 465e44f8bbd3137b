"""Deterministic-prefix sampling: the torch.fx split, its verification and its equality with full sampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from monai.networks.nets import BasicUNet, UNet

from monai_seg.inferers import MCDropoutInferer, mc_dropout_mode, split_deterministic_prefix
from monai_seg.networks import R2UNet, ResUNet, TwoHeadUNet


pytestmark = pytest.mark.usefixtures("one_thread")


def head_dropout_net() -> nn.Module:
    """Two conv blocks, then dropout right before the 1x1 head; in-place ReLU right after the split."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8),
        nn.Dropout2d(0.3), nn.ReLU(inplace=True), nn.Conv2d(8, 1, 1),
    ).eval()  # fmt: skip


class DecoderDropout(nn.Module):
    """Encoder without dropout, a decoder stage that traces wrongly (``torch.jit.isinstance`` on a proxy)."""

    class Up(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = nn.Upsample(scale_factor=2)
            self.conv = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.Dropout2d(0.3))

        def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
            x = self.up(x)
            if skip is not None and torch.jit.isinstance(skip, torch.Tensor):  # False for an fx proxy
                x = torch.cat([skip, x], dim=1)
            else:
                x = torch.cat([x, x], dim=1)
            return self.conv(x)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.enc0 = nn.Conv2d(1, 8, 3, padding=1)
        self.enc1 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1))
        self.up = self.Up()
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.enc0(x)
        return self.head(self.up(self.enc1(x0), x0))


def full_and_prefix(net: nn.Module, x: torch.Tensor, sample_batch: int, num_samples: int = 6) -> tuple:
    full = MCDropoutInferer(num_samples, sample_batch=sample_batch, seed=11, prefix_sampling=False)(x, net)
    inferer = MCDropoutInferer(num_samples, sample_batch=sample_batch, seed=11)
    return full, inferer(x, net), inferer.prefix_split(net)


def test_head_dropout_split_is_bitwise_full_sampling() -> None:
    net, x = head_dropout_net(), torch.randn(1, 1, 16, 16)
    full, prefix, split = full_and_prefix(net, x, sample_batch=1)
    assert split is not None
    assert [n.target for n in split.prefix.graph.nodes if n.op == "call_module"] == ["0", "1", "2", "3", "4"]
    assert torch.equal(full, prefix)
    full, prefix, _ = full_and_prefix(net, torch.randn(2, 1, 16, 16), sample_batch=4)
    torch.testing.assert_close(full, prefix, atol=1e-6, rtol=1e-5)


def test_in_place_suffix_gets_copies() -> None:
    """An in-place dropout right on a prefix value must not corrupt the cached prefix for later samples."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Dropout2d(0.5, inplace=True), nn.Conv2d(8, 1, 1)).eval()
    full, prefix, split = full_and_prefix(net, torch.randn(1, 1, 12, 12), sample_batch=1)
    assert split is not None and torch.equal(full, prefix)


def test_suffix_samples_equal_full_network_samples() -> None:
    """Same random state -> same dropout masks -> same samples, chunk by chunk."""
    net, x = head_dropout_net(), torch.randn(2, 1, 12, 12)
    with mc_dropout_mode(net):
        split = split_deterministic_prefix(net, x)
        values = split.run_prefix(x)
        torch.manual_seed(0)
        suffix = [split.run_suffix(values, 3) for _ in range(2)]
        torch.manual_seed(0)
        full = [net(x.repeat(3, 1, 1, 1)) for _ in range(2)]
    for a, b in zip(suffix, full):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert not torch.equal(suffix[0], suffix[1])


def test_unfaithful_trace_is_rejected_and_coarser_split_used() -> None:
    net, x = DecoderDropout().eval(), torch.randn(1, 1, 16, 16)
    full, prefix, split = full_and_prefix(net, x, sample_batch=2)
    assert split is not None  # the root's children as leaves: encoder once, decoder stage per sample
    assert {n.target for n in split.suffix.graph.nodes if n.op == "call_module"} == {"up", "head"}
    torch.testing.assert_close(full, prefix, atol=1e-6, rtol=1e-5)


def test_monai_unet_traces_and_matches() -> None:
    torch.manual_seed(0)
    net = UNet(2, 1, 2, (8, 16, 32), (2, 2), num_res_units=1, dropout=0.2).eval()
    full, prefix, split = full_and_prefix(net, torch.randn(1, 1, 16, 16), sample_batch=3)
    assert split is not None
    torch.testing.assert_close(full, prefix, atol=1e-6, rtol=1e-5)


def test_basic_unet_falls_back_to_full_sampling() -> None:
    """fx drops BasicUNet's skip connections; verification rejects that graph, its first conv has dropout."""
    torch.manual_seed(0)
    net = BasicUNet(2, 1, 1, features=(4, 4, 8, 8, 16, 4), dropout=0.2).eval()
    full, prefix, split = full_and_prefix(net, torch.randn(1, 1, 32, 32), sample_batch=2, num_samples=3)
    assert split is None
    assert torch.equal(full, prefix)


@pytest.mark.parametrize(
    "net,shape",
    [
        (lambda: ResUNet(2, 2, 1, channels=(8, 16, 16), blocks=(1, 1, 1), dropout_location="decoder"), (1, 2, 16, 16)),
        (lambda: R2UNet(2, 1, 1, channels=(8, 16, 16), dropout_location="decoder"), (1, 1, 16, 16)),
        (lambda: TwoHeadUNet(2, 1, 1, channels=(16, 16, 32), dropout_location="decoder"), (2, 1, 16, 16)),
    ],
)
def test_project_nets_with_decoder_dropout(net, shape: tuple) -> None:
    torch.manual_seed(0)
    net = net().eval()
    full, prefix, split = full_and_prefix(net, torch.randn(shape), sample_batch=3)
    assert split is not None
    prefix_parts = {n.target.split(".")[0] for n in split.prefix.graph.nodes if n.op == "call_module"}
    suffix_parts = {n.target.split(".")[0] for n in split.suffix.graph.nodes if n.op == "call_module"}
    assert "encoder" in prefix_parts and "encoder" not in suffix_parts and "decoder" in suffix_parts
    torch.testing.assert_close(full, prefix, atol=1e-6, rtol=1e-5)


def test_two_head_presence_head_runs_once_and_shapes_follow_samples() -> None:
    """The presence head is deterministic with decoder-only dropout; ``presence.shape[0]`` is recomputed per chunk."""
    torch.manual_seed(0)
    net = TwoHeadUNet(2, 1, 1, channels=(16, 16, 32), dropout_location="decoder").eval()
    x = torch.randn(2, 1, 16, 16)
    inferer = MCDropoutInferer(4, sample_batch=4, seed=0)
    out = inferer(x, net)
    split = inferer.prefix_split(net)
    assert any(n.target.startswith("presence_head") for n in split.prefix.graph.nodes if n.op == "call_module")
    assert not any(n.target.startswith("presence_head") for n in split.suffix.graph.nodes if n.op == "call_module")
    std = out[:, 2:4]  # sigmoid over [segmentation, presence]: mean (2), std (2), ...
    assert torch.all(std[:, 1] == 0) and torch.any(std[:, 0] > 0)


def test_untraceable_net_falls_back() -> None:
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.drop = nn.Conv2d(1, 4, 3, padding=1), nn.Dropout(0.5)
            self.head = nn.Conv2d(4, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.conv(x)
            if x.mean() > 100:  # value-dependent control flow: not traceable
                x = -x
            return self.head(self.drop(x))

    net = DataDependent().eval()
    full, prefix, split = full_and_prefix(net, torch.randn(1, 1, 8, 8), sample_batch=2)
    assert split is None and torch.equal(full, prefix)


def test_random_ops_stay_in_the_suffix() -> None:
    class Noisy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.drop, self.head = nn.Conv2d(1, 4, 3, padding=1), nn.Dropout(0.2), nn.Conv2d(4, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.conv(x)
            return self.head(self.drop(h) + 0.0 * torch.randn_like(h)) + torch.rand_like(x) * 0.0

    net, x = Noisy().eval(), torch.randn(1, 1, 8, 8)
    with mc_dropout_mode(net):
        split = split_deterministic_prefix(net, x)
    prefix_targets = {n.target for n in split.prefix.graph.nodes if n.op == "call_function"}
    assert torch.randn_like not in prefix_targets and torch.rand_like not in prefix_targets


def test_output_without_dropout_dependence_is_an_error() -> None:
    class Dead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.drop = nn.Conv2d(1, 1, 1), nn.Dropout(0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.drop(x)
            return self.conv(x)

    with pytest.raises(ValueError, match="does not depend on any dropout"):
        MCDropoutInferer(3)(torch.randn(1, 1, 4, 4), Dead().eval())


def test_split_leaves_modes_and_weights_alone() -> None:
    net = head_dropout_net().train()
    stats = net[1].running_mean.clone()
    split_deterministic_prefix(net, torch.randn(2, 1, 8, 8))
    assert all(m.training for m in net.modules())
    assert torch.equal(net[1].running_mean, stats)
