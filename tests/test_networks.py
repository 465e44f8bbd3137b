"""Shape, export, stride, dropout and gradient tests shared by every monai-seg net.

``NetTester`` holds the checks; each net's test class only says how to build the net (as
segmentation_models_pytorch's ``BaseModelTester``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from monai.networks import eval_mode, train_mode
from monai.networks.utils import convert_to_torchscript

from monai_seg.networks import R2UNet, ResUNet, RUNet, TwoHeadUNet

# narrow three-level (stride 4) versions of each net, so 3D cases stay fast
SMALL = {
    "R2UNet": {"channels": (8, 16, 32)},
    "ResUNet": {"channels": (8, 16, 32), "blocks": (1, 2, 2)},
    "TwoHeadUNet": {"channels": (16, 32, 64)},
}


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def dropout_modules(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


class NetTester:
    """Checks every net must pass; subclasses set ``net_cls``, ``extra_out`` and the cases."""

    net_cls: type[nn.Module]
    extra_out = 0  # output channels beyond out_channels (TwoHeadUNet's presence channel)
    default_kwargs: dict = {}  # set by a subclass to test a non-default configuration of its net
    # (spatial_dims, in_channels, out_channels, spatial size): batch 1, odd-but-divisible sizes
    shape_cases = [
        (2, 1, 1, (80, 112)),
        (2, 1, 2, (96, 96)),
        (2, 4, 1, (64, 64)),
        (2, 3, 3, (48, 80)),
        (3, 1, 2, (64, 64, 64)),
        (3, 4, 3, (16, 48, 32)),
        (1, 2, 1, (144,)),
    ]

    def small(self, spatial_dims: int, in_channels: int, out_channels: int, **kwargs) -> nn.Module:
        """The net with narrow levels (stride 4) so 3D cases stay fast."""
        kwargs = {**SMALL[self.net_cls.__name__], **self.default_kwargs, **kwargs}
        return self.net_cls(spatial_dims, in_channels, out_channels, **kwargs)

    def test_shapes(self):
        for spatial_dims, in_c, out_c, size in self.shape_cases:
            full_size = spatial_dims == 2 and size == (80, 112)  # the default depth on the nerve size
            net = (
                self.net_cls(spatial_dims, in_c, out_c, **self.default_kwargs)
                if full_size
                else self.small(spatial_dims, in_c, out_c)
            )
            with eval_mode(net):
                out = net(torch.randn(1, in_c, *size))
            assert out.shape == (1, out_c + self.extra_out, *size), (spatial_dims, in_c, out_c, size)

    def test_stride_error(self):
        net = self.net_cls(2, 1, 1, **self.default_kwargs)  # default depth: stride 16
        with eval_mode(net), pytest.raises(ValueError, match="not divisible by the net's total stride 16"):
            net(torch.randn(1, 1, 80, 100))
        scripted = torch.jit.script(net)
        with pytest.raises(Exception, match="not divisible"):
            scripted(torch.randn(1, 1, 72, 64))

    def test_torchscript_round_trip(self, tmp_path):
        net = self.small(2, 1, 2)
        x = torch.randn(2, 1, 32, 48)
        path = tmp_path / "net.ts"
        convert_to_torchscript(net, filename_or_obj=str(path), verify=True, inputs=[x], rtol=0, atol=0)
        loaded = torch.jit.load(str(path))
        with eval_mode(net):
            assert torch.equal(loaded(x), net(x))

    def test_gradients_reach_every_parameter(self):
        net = self.small(2, 2, 2)
        net.train()
        net(torch.randn(2, 2, 32, 32)).square().mean().backward()
        missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing

    def test_dropout_active_only_in_train(self):
        net = self.small(2, 1, 1, dropout=0.3)
        assert dropout_modules(net)
        x = torch.randn(2, 1, 32, 32)
        with eval_mode(net):
            assert torch.equal(net(x), net(x))
        with train_mode(net):
            torch.manual_seed(0)
            a = net(x)
            b = net(x)
        assert not torch.equal(a, b)
        no_dropout = self.small(2, 1, 1, dropout=0.0)
        assert not dropout_modules(no_dropout)

    def test_decoder_only_dropout(self):
        net = self.small(2, 1, 1, dropout=0.3, dropout_location="decoder")
        assert not dropout_modules(net.encoder)
        assert dropout_modules(net.decoder)
        # same weight keys as with dropout everywhere: checkpoints are interchangeable
        assert net.state_dict().keys() == self.small(2, 1, 1, dropout=0.3).state_dict().keys()
        with pytest.raises(ValueError, match="dropout_location"):
            self.small(2, 1, 1, dropout_location="encoder")

    def test_argument_errors(self):
        for kwargs in ({"channels": (16,)}, {"dropout": 1.0}):
            with pytest.raises(ValueError):
                self.small(2, 1, 1, **kwargs)
        with pytest.raises(ValueError, match="spatial_dims"):
            self.small(4, 1, 1)


class TestR2UNet(NetTester):
    net_cls = R2UNet

    def test_parameter_count(self):
        # the R2U-Net study's configuration: 16 initial features, 3 in, 1 out (docs/studies.md#the-r2u-net-structure:
        # 2.45M in the widely used PyTorch implementation)
        assert count_parameters(R2UNet(2, 3, 1)) == 2_447_665
        assert count_parameters(R2UNet(2, 3, 1, t=3)) == 2_447_665  # t shares weights

    def test_recurrence_shares_one_conv(self):
        net = R2UNet(2, 1, 1, channels=(8, 16), t=3)
        block = net.encoder[0][0].recurrent[0]
        assert block.t == 3 and len([m for m in block.modules() if isinstance(m, nn.Conv2d)]) == 1

    def test_runet_has_no_residual(self):
        runet = RUNet(2, 1, 1, channels=(8, 16))
        assert not runet.encoder[0][0].residual
        assert count_parameters(runet) == count_parameters(R2UNet(2, 1, 1, channels=(8, 16)))


class TestResUNet(NetTester):
    net_cls = ResUNet

    def test_parameter_count(self):
        # the BraTS study's configuration: 4 in, 1 out (the study reports ~6.85M, see the docstring)
        assert count_parameters(ResUNet(2, 4, 1)) == 3_283_809

    def test_blocks_per_level(self):
        net = ResUNet(2, 1, 1, channels=(8, 16, 32), blocks=(1, 2, 3))
        from monai_seg.networks import ResidualBlock

        counts = [len([m for m in level.modules() if isinstance(m, ResidualBlock)]) for level in net.encoder]
        assert counts == [1, 2, 3]
        with pytest.raises(ValueError, match="blocks needs 3 values"):
            ResUNet(2, 1, 1, channels=(8, 16, 32), blocks=(1, 2))

    def test_dropout_is_spatial(self):
        net = ResUNet(2, 1, 1, channels=(8, 16), blocks=1, dropout=0.2)
        assert all(isinstance(m, nn.Dropout2d) for m in dropout_modules(net))


class TestTwoHeadUNet(NetTester):
    net_cls = TwoHeadUNet
    extra_out = 1

    def test_parameter_count(self):
        assert count_parameters(TwoHeadUNet(2, 1, 1)) == 1_866_648
        study = TwoHeadUNet(2, 1, 1, presence_features=1, presence_grid=(5, 7), presence_pool="avg")
        assert count_parameters(study) == 1_858_972

    @pytest.mark.parametrize("location, shifted", [("heads", False), ("all", True)])
    def test_default_dropout_feeds_no_batchnorm(self, location, shifted):
        """With the default only the heads' inputs are dropped: no BatchNorm input depends on the dropout masks."""
        net = TwoHeadUNet(2, 1, 1, channels=(16, 32, 64), dropout=0.5, dropout_location=location).train()
        inputs: list[torch.Tensor] = []
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.register_forward_hook(lambda module, args, out: inputs.append(args[0].detach().clone()))
        x = torch.randn(2, 1, 32, 48)
        for seed in (0, 1):  # two draws of the dropout masks
            torch.manual_seed(seed)
            net(x)
        first, second = inputs[: len(inputs) // 2], inputs[len(inputs) // 2 :]
        assert any(not torch.equal(a, b) for a, b in zip(first, second)) == shifted

    def test_dropout_locations(self):
        def count(location: str) -> int:
            net = TwoHeadUNet(2, 1, 1, channels=(16, 32, 64), dropout=0.5, dropout_location=location)
            return sum(isinstance(m, nn.Dropout) for m in net.modules())

        assert (count("heads"), count("decoder"), count("all")) == (2, 2, 4)
        with pytest.raises(ValueError, match="dropout_location"):
            TwoHeadUNet(2, 1, 1, dropout_location="encoder")

    def test_presence_channel_is_one_logit_per_image(self):
        net = TwoHeadUNet(2, 1, 1, channels=(16, 32, 64))
        with eval_mode(net):
            out = net(torch.randn(3, 1, 32, 48))
        presence = out[:, -1]
        assert torch.allclose(presence, presence[:, :1, :1].expand_as(presence))
        assert not torch.allclose(out[0, -1, 0, 0], out[1, -1, 0, 0])  # per image, not a constant

    def test_presence_head_any_size(self):
        # the grid makes the presence head independent of the input size
        net = TwoHeadUNet(2, 1, 1, presence_grid=(5, 7), presence_pool="avg")
        with eval_mode(net):
            for size in ((80, 112), (64, 64), (160, 224)):
                assert net(torch.randn(1, 1, *size)).shape == (1, 2, *size)

    def test_presence_pool(self):
        net = TwoHeadUNet(2, 1, 1, channels=(16, 32, 64))  # the default: position-invariant
        assert isinstance(net.presence_head[1], nn.AdaptiveMaxPool2d)
        assert net.presence_head[4].in_features == 16
        net = TwoHeadUNet(2, 1, 1, channels=(16, 32, 64), presence_features=1, presence_grid=(5, 7), presence_pool="avg")
        assert isinstance(net.presence_head[1], nn.AdaptiveAvgPool2d) and net.presence_head[4].in_features == 35
        with pytest.raises(ValueError, match="presence_pool"):
            TwoHeadUNet(2, 1, 1, presence_pool="median")
