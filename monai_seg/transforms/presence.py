"""Presence gating: blank a predicted mask when the image-level presence head says "absent", and flag the images
whose sampled presence is too uncertain to decide."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import AsDiscrete, MapTransform
from monai.utils import ensure_tuple_rep, look_up_option

from monai_seg.losses.two_head import split_presence
from monai_seg.metrics.triage import compute_interval_referral_score

__all__ = ["GATING_RULES", "COMBINED_AREA_NORM", "gate_mask", "PresenceGatingd"]

GATING_RULES = ("presence", "combined")
COMBINED_AREA_NORM = 10000.0
"""Foreground pixel count at which the mask area gives full evidence in the "combined" rule (580x420 images)."""


def gate_mask(
    mask: NdarrayOrTensor,
    presence_prob: float | NdarrayOrTensor,
    threshold: float = 0.5,
    rule: str = "presence",
    min_pixels: int = 0,
) -> NdarrayOrTensor:
    """
    Return ``mask`` unchanged, or an all-zero mask of the same type, shape and dtype when gated.

    Rules (``n`` = number of foreground pixels of ``mask``, over all channels):

        - ``"presence"``: blank when ``presence_prob < threshold``.
        - ``"combined"``: the rule of the 0.694 Kaggle nerve solution (docs/studies.md#the-two-head-solution),
          ``p = (presence_prob + min(1, n / 10000) * 5 / 3) / 2``; blank when ``p < threshold``.
          The area term assumes the mask at the original 580x420 resolution, so gate after the
          prediction is resized back.

    Independently of the rule, masks with ``n < min_pixels`` are blanked (the solution used 10).

    Args:
        mask: binary mask, numpy array or tensor of any shape, e.g. (C, H, W).
        presence_prob: image-level presence probability.
        threshold: gating threshold; a value equal to the threshold keeps the mask.
        rule: ``"presence"`` or ``"combined"``.
        min_pixels: smallest foreground pixel count that is kept.

    Raises:
        ValueError: when ``rule`` is not one of :py:data:`GATING_RULES`.
    """
    rule = look_up_option(rule, GATING_RULES)
    n = float(mask.sum())
    score = float(presence_prob)
    if rule == "combined":
        score = (score + min(1.0, n / COMBINED_AREA_NORM) * 5.0 / 3.0) / 2.0
    if score >= threshold and n >= min_pixels:
        return mask
    return np.zeros_like(mask) if isinstance(mask, np.ndarray) else torch.zeros_like(mask)


class PresenceGatingd(MapTransform):
    """
    Turn a two-head probability map into a gated binary segmentation.

    Input ``data[key]`` is the decollated two-head output after ``Activationsd(sigmoid=True)``:
    probabilities of shape (C + 1, *spatial), segmentation channels first and the presence channel
    last. The presence probability is the spatial mean of the last channel (see
    ``monai_seg.losses.split_presence``). The output replaces ``data[key]`` with the C segmentation
    channels binarised at ``mask_threshold`` (float32, as ``AsDiscrete``) and blanked by
    :py:func:`gate_mask`. Place it after ``Invertd``/resizing when using ``rule="combined"``.

    **Referral** (``std_key``): with Monte-Carlo dropout (``MCDropoutInferer(maps=("mean", "std"))`` then
    ``SplitUncertaintyd``), ``data[key]`` holds the mean probabilities and ``data[std_key]`` their std, whose
    last channel is the presence std (only its spatial mean is read, so the std map need not be resized back
    with ``Invertd``). The image is referred to a human when the interval
    ``presence ± refer_k * std`` contains ``threshold`` (the presence head cannot decide at that confidence,
    :func:`~monai_seg.metrics.compute_interval_referral_score` >= 1 / ``refer_k``). Referral only flags: the
    mask is gated as without it (a submission needs a mask for every image), and
    ``f"{presence_key}_std"`` and ``f"{presence_key}_referred"`` (1.0 or 0.0) are stored beside the presence.

    Example postprocessing::

        Compose([
            Activationsd(keys="pred", sigmoid=True),
            PresenceGatingd(keys="pred", threshold=0.5, presence_key="presence"),
        ])

    Args:
        keys: keys of the two-head probability maps.
        threshold: presence threshold (see :py:func:`gate_mask`).
        rule: ``"presence"`` or ``"combined"`` (see :py:func:`gate_mask`).
        min_pixels: masks with fewer foreground pixels are blanked.
        mask_threshold: probability threshold that binarises the segmentation channels.
        presence_key: if not None, key(s) (one per entry of ``keys``) under which the presence
            probability is stored as a float32 tensor of shape (1,), e.g. for a per-image CSV.
        std_key: if not None, key(s) (one per entry of ``keys``) of the std maps, shape (C + 1, *spatial),
            that switch the referral on; needs ``presence_key``.
        refer_k: half-width of the presence interval in stds.
        allow_missing_keys: don't raise an exception if a key is missing.

    Raises:
        ValueError: for an unknown ``rule``, ``std_key`` without ``presence_key``, or a negative ``refer_k``.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        threshold: float = 0.5,
        rule: str = "presence",
        min_pixels: int = 0,
        mask_threshold: float = 0.5,
        presence_key: str | Sequence[str] | None = None,
        std_key: str | Sequence[str] | None = None,
        refer_k: float = 2.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if std_key is not None and presence_key is None:
            raise ValueError("PresenceGatingd: std_key needs presence_key, under which the referral is stored.")
        if refer_k < 0:
            raise ValueError(f"refer_k must be >= 0, got {refer_k}.")
        self.threshold = threshold
        self.rule = look_up_option(rule, GATING_RULES)
        self.min_pixels = min_pixels
        self.binarize = AsDiscrete(threshold=mask_threshold)
        self.presence_keys = ensure_tuple_rep(presence_key, len(self.keys))
        self.std_keys = ensure_tuple_rep(std_key, len(self.keys))
        self.refer_k = refer_k

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key, presence_key, std_key in self.key_iterator(d, self.presence_keys, self.std_keys):
            seg, presence = split_presence(d[key].unsqueeze(0))
            presence_prob = presence.item()
            d[key] = gate_mask(self.binarize(seg[0]), presence_prob, self.threshold, self.rule, self.min_pixels)
            if presence_key is not None:
                d[presence_key] = torch.tensor([presence_prob], dtype=torch.float32)
            if std_key is not None:
                std = split_presence(d[std_key].unsqueeze(0))[1].item()
                referred = compute_interval_referral_score(presence_prob, std, self.threshold) * self.refer_k >= 1
                d[f"{presence_key}_std"] = torch.tensor([std], dtype=torch.float32)
                d[f"{presence_key}_referred"] = torch.tensor([float(referred)], dtype=torch.float32)
        return d
