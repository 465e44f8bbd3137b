"""Loss for two-head networks: segmentation logits plus one image-level presence logit.

A two-head net (``monai_seg.networks.TwoHeadUNet``) returns one tensor of shape
``(B, out_channels + 1, *spatial)``: the first ``out_channels`` channels are segmentation logits and
the last channel is the presence logit broadcast over space. Keeping a single output tensor lets
MONAI's ``SupervisedTrainer``, ``SupervisedEvaluator`` and ``SlidingWindowInferer`` run unchanged;
the presence target is derived from the mask inside the loss, so no trainer fork is needed.
"""

from __future__ import annotations

import torch
from monai.losses import DiceLoss
from torch import nn
from torch.nn.modules.loss import _Loss

__all__ = ["split_presence", "presence_target", "TwoHeadLoss"]


def split_presence(pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Split a two-head output into segmentation channels and the image-level presence value.

    The presence value is the spatial mean of the last channel: the net broadcasts a constant, and
    under a sliding-window inferer the channel becomes a per-window average, whose mean is the
    image-level value.

    Args:
        pred: two-head output, shape (B, C + 1, *spatial), logits or probabilities.

    Returns:
        segmentation channels, shape (B, C, *spatial), and presence, shape (B, 1).

    Raises:
        ValueError: when ``pred`` has no spatial dimension or fewer than two channels.
    """
    if pred.ndim < 3 or pred.shape[1] < 2:
        raise ValueError(
            f"two-head output must have shape (B, C + 1, *spatial) with C >= 1, got {tuple(pred.shape)}."
        )
    return pred[:, :-1], pred[:, -1:].flatten(start_dim=2).mean(dim=2)


def presence_target(label: torch.Tensor) -> torch.Tensor:
    """
    Image-level presence target: 1 where the mask has any foreground pixel in any channel.

    Args:
        label: binary mask, shape (B, C, *spatial).

    Returns:
        float tensor of shape (B, 1) with values in {0, 1}.
    """
    return (label.flatten(start_dim=1) > 0).any(dim=1, keepdim=True).to(torch.float32)


class TwoHeadLoss(_Loss):
    """
    ``seg_loss(seg_logits, label) + presence_weight * BCEWithLogits(presence_logit, presence_target)``.

    This is the two-head objective of the Kaggle nerve study (-Dice with smooth 1, plus 0.5 x the
    binary cross-entropy of the "nerve present" logit; docs/studies.md#the-two-head-solution). The presence
    target is computed from the mask (:py:func:`presence_target`), so the loss fits MONAI's
    ``SupervisedTrainer`` as ``loss_function`` and a bundle config as
    ``{"_target_": "monai_seg.losses.TwoHeadLoss"}``.

    The default segmentation loss is ``DiceLoss(sigmoid=True, smooth_nr=1, smooth_dr=1, batch=True)``.
    ``batch=True`` computes one Dice over the whole mini-batch, as the two-head solution's code does
    (it flattens the batch before the Dice). Per-image Dice is a poor fit for the nerve data, where
    about half of the masks are empty: on an empty mask the per-image loss is
    ``sum(p) / (sum(p) + 1)``, which saturates at 1 for any non-trivial prediction, so those images
    add a near-constant loss with a vanishing gradient. With the batch Dice their false positives
    enlarge the shared denominator and keep a useful gradient, and the presence head deals with
    the image-level decision.

    Args:
        seg_loss: loss on the segmentation logits ``(B, C, *spatial)`` and the label. Defaults to the
            batch Dice described above.
        presence_weight: weight of the presence BCE term.

    Example::

        loss = TwoHeadLoss()
        pred = net(image)  # (B, C + 1, H, W)
        value = loss(pred, label)  # label: (B, C, H, W) binary mask
    """

    def __init__(self, seg_loss: nn.Module | None = None, presence_weight: float = 0.5) -> None:
        super().__init__()
        self.seg_loss = (
            DiceLoss(sigmoid=True, smooth_nr=1.0, smooth_dr=1.0, batch=True) if seg_loss is None else seg_loss
        )
        self.presence_loss = nn.BCEWithLogitsLoss()
        self.presence_weight = presence_weight

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: two-head logits, shape (B, C + 1, *spatial).
            target: binary mask, shape (B, C, *spatial).

        Raises:
            ValueError: when ``input`` does not have exactly one channel more than ``target``.
        """
        if input.ndim != target.ndim or input.shape[1] != target.shape[1] + 1:
            raise ValueError(
                "prediction must have one channel more than the label (segmentation channels + presence), "
                f"got prediction {tuple(input.shape)} and label {tuple(target.shape)}."
            )
        seg_logits, presence_logit = split_presence(input)
        presence = self.presence_loss(presence_logit, presence_target(target).to(presence_logit))
        return self.seg_loss(seg_logits, target) + self.presence_weight * presence
