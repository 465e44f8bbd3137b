"""Two-head loss (segmentation + presence) and presence gating."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import DataLoader, MetaTensor
from monai.engines import SupervisedTrainer
from monai.losses import DiceLoss
from monai.transforms import Activationsd, Compose
from torch import nn

from monai_seg.losses import TwoHeadLoss, presence_target, split_presence
from monai_seg.transforms import PresenceGatingd, gate_mask


def _pred_and_label() -> tuple[torch.Tensor, torch.Tensor]:
    """(2, 2, 2, 2) logits (one segmentation channel + presence) and (2, 1, 2, 2) masks, first one empty."""
    pred = torch.tensor(
        [
            [[[1.0, -2.0], [0.5, -1.0]], [[-1.0, -3.0], [0.0, -2.0]]],
            [[[2.0, 1.0], [-0.5, -1.5]], [[1.0, 3.0], [2.0, 2.0]]],
        ]
    )
    label = torch.zeros(2, 1, 2, 2)
    label[1, 0, 0] = 1.0
    return pred, label


class TestSplitPresence:
    def test_split(self):
        pred, _ = _pred_and_label()
        seg, presence = split_presence(pred)
        assert seg.shape == (2, 1, 2, 2)
        torch.testing.assert_close(seg, pred[:, :1])
        torch.testing.assert_close(presence, torch.tensor([[-1.5], [2.0]]))

    def test_presence_target(self):
        _, label = _pred_and_label()
        torch.testing.assert_close(presence_target(label), torch.tensor([[0.0], [1.0]]))

    @pytest.mark.parametrize("shape", [(2, 1, 4, 4), (2, 3)])
    def test_bad_shape(self, shape):
        with pytest.raises(ValueError, match="two-head output"):
            split_presence(torch.zeros(shape))


class TestTwoHeadLoss:
    def test_value_by_hand(self):
        pred, label = _pred_and_label()
        p = torch.sigmoid(pred[:, 0])
        y = label[:, 0]
        dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)  # one Dice over the batch, smooth 1
        z = torch.tensor([-1.5, 2.0])  # spatial means of the presence channel
        t = torch.tensor([0.0, 1.0])  # image 0 empty, image 1 not
        bce = -(t * torch.log(torch.sigmoid(z)) + (1 - t) * torch.log(1 - torch.sigmoid(z))).mean()
        torch.testing.assert_close(TwoHeadLoss()(pred, label), dice + 0.5 * bce)
        torch.testing.assert_close(TwoHeadLoss(presence_weight=2.0)(pred, label), dice + 2.0 * bce)

    def test_custom_seg_loss(self):
        pred, label = _pred_and_label()
        seg_loss = DiceLoss(sigmoid=True, batch=False)
        torch.testing.assert_close(
            TwoHeadLoss(seg_loss=seg_loss, presence_weight=0.0)(pred, label), seg_loss(pred[:, :1], label)
        )

    def test_gradient_reaches_presence_channel(self):
        pred, label = _pred_and_label()
        pred.requires_grad_(True)
        TwoHeadLoss()(pred, label).backward()
        # d(0.5 * mean_b BCE(mean_hw x_b, t_b)) / dx_bhw = 0.5 * (sigmoid(z_b) - t_b) / B / (H * W)
        expected = 0.5 * (torch.sigmoid(torch.tensor([-1.5, 2.0])) - torch.tensor([0.0, 1.0])) / 2 / 4
        torch.testing.assert_close(pred.grad[:, 1], expected.view(2, 1, 1).expand(2, 2, 2))
        assert pred.grad[:, 0].abs().sum() > 0

    @pytest.mark.parametrize("pred_channels", [1, 3])
    def test_channel_mismatch(self, pred_channels):
        with pytest.raises(ValueError, match="one channel more than the label"):
            TwoHeadLoss()(torch.zeros(2, pred_channels, 4, 4), torch.zeros(2, 1, 4, 4))

    def test_config_target(self):
        config = {"loss": {"_target_": "monai_seg.losses.TwoHeadLoss", "presence_weight": 0.25}}
        loss = ConfigParser(config).get_parsed_content("loss")
        assert isinstance(loss, TwoHeadLoss) and loss.presence_weight == 0.25

    def test_supervised_trainer_iteration(self):
        torch.manual_seed(0)
        label = torch.zeros(4, 1, 8, 8)
        label[2:, :, 2:5, 3:6] = 1.0
        data = [{"image": torch.rand(1, 8, 8) + lb, "label": lb} for lb in label]
        net = nn.Conv2d(1, 2, kernel_size=1)  # stand-in two-head net: segmentation + presence channel
        before = net.weight.detach().clone()
        trainer = SupervisedTrainer(
            device=torch.device("cpu"),
            max_epochs=1,
            train_data_loader=DataLoader(data, batch_size=4),
            network=net,
            optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
            loss_function=TwoHeadLoss(),
        )
        trainer.run()
        assert trainer.state.iteration == 1
        assert np.isfinite(trainer.state.output[0]["loss"])
        assert not torch.equal(net.weight[1], before[1])  # the presence channel was trained


class TestGateMask:
    @pytest.mark.parametrize("as_tensor", [False, True])
    def test_presence_threshold(self, as_tensor):
        mask = np.zeros((1, 4, 4), dtype=np.uint8)
        mask[0, 1:3, 1:3] = 1
        mask = torch.as_tensor(mask) if as_tensor else mask
        kept = gate_mask(mask, 0.5, threshold=0.5)
        blanked = gate_mask(mask, 0.49, threshold=0.5)
        assert type(kept) is type(mask) and type(blanked) is type(mask)
        assert kept.sum() == 4 and blanked.sum() == 0
        assert blanked.shape == mask.shape and blanked.dtype == mask.dtype

    def test_combined_rule(self):
        mask = np.zeros((1, 100, 100), dtype=np.uint8)
        mask.reshape(-1)[:5000] = 1
        # p = (0.3 + min(1, 5000 / 10000) * 5 / 3) / 2 = 0.5667: a large mask overrides a weak presence
        assert gate_mask(mask, 0.3, rule="combined").sum() == 5000
        assert gate_mask(mask, 0.3, rule="presence").sum() == 0
        mask.reshape(-1)[4000:] = 0  # p = (0.3 + 0.4 * 5 / 3) / 2 = 0.4833
        assert gate_mask(mask, 0.3, rule="combined").sum() == 0
        small = np.zeros((1, 100, 100), dtype=np.uint8)
        small.reshape(-1)[:10] = 1  # p = (0.9 + 0.001 * 5 / 3) / 2 = 0.4508: a tiny mask needs more presence
        assert gate_mask(small, 0.9, rule="combined").sum() == 0
        assert gate_mask(small, 0.9, rule="combined", threshold=0.45).sum() == 10

    def test_min_pixels(self):
        mask = torch.zeros(1, 8, 8)
        mask.view(-1)[:9] = 1
        assert gate_mask(mask, 1.0, min_pixels=10).sum() == 0
        mask.view(-1)[9] = 1
        assert gate_mask(mask, 1.0, min_pixels=10).sum() == 10

    def test_bad_rule(self):
        with pytest.raises(ValueError):
            gate_mask(np.zeros((1, 2, 2)), 1.0, rule="area")


class TestPresenceGatingd:
    def _prob(self, presence: float) -> MetaTensor:
        seg = torch.tensor([[[0.9, 0.2, 0.6], [0.1, 0.5, 0.4]]])
        return MetaTensor(torch.cat([seg, torch.full_like(seg, presence)]), meta={"filename_or_obj": "a.tif"})

    def test_keep_and_blank(self):
        out = PresenceGatingd(keys="pred", presence_key="presence")({"pred": self._prob(0.7)})
        expected = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])
        assert out["pred"].shape == (1, 2, 3) and out["pred"].dtype == torch.float32
        torch.testing.assert_close(out["pred"].as_tensor(), expected)
        assert out["pred"].meta["filename_or_obj"] == "a.tif"
        torch.testing.assert_close(out["presence"], torch.tensor([0.7]))
        blanked = PresenceGatingd(keys="pred")({"pred": self._prob(0.3)})
        assert blanked["pred"].shape == (1, 2, 3) and blanked["pred"].sum() == 0
        assert "presence" not in blanked

    def test_mask_threshold_min_pixels_and_combined(self):
        prob = self._prob(0.7)
        assert PresenceGatingd(keys="pred", mask_threshold=0.8)({"pred": prob})["pred"].sum() == 1
        assert PresenceGatingd(keys="pred", min_pixels=4)({"pred": prob})["pred"].sum() == 0
        # combined: (0.7 + 3 / 10000 * 5 / 3) / 2 = 0.3503 < 0.5
        assert PresenceGatingd(keys="pred", rule="combined")({"pred": prob})["pred"].sum() == 0

    def test_presence_is_spatial_mean(self):
        """A sliding-window inferer turns the constant presence channel into per-window values."""
        prob = self._prob(0.0)
        prob[1, 0] = 1.0  # mean of the presence channel: 3 / 6 = 0.5
        out = PresenceGatingd(keys="pred", presence_key="presence")({"pred": prob})
        torch.testing.assert_close(out["presence"], torch.tensor([0.5]))
        assert out["pred"].sum() == 3

    def test_after_sigmoid_activation(self):
        logits = torch.zeros(2, 4, 4)
        logits[0, :2] = 5.0
        logits[0, 2:] = -5.0
        logits[1] = 2.0  # presence probability sigmoid(2) = 0.881
        post = Compose([Activationsd(keys="pred", sigmoid=True), PresenceGatingd(keys="pred", presence_key="presence")])
        out = post({"pred": logits})
        assert out["pred"].shape == (1, 4, 4) and out["pred"].sum() == 8
        torch.testing.assert_close(out["presence"], torch.sigmoid(torch.tensor([2.0])))
