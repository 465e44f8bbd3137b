"""Uncertainty maps as transforms: split :class:`~monai_seg.inferers.MCDropoutInferer`'s output into one key per
map, for saving, and the entropy of a deterministic prediction's probabilities."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_seg.inferers.mc_dropout import (
    ACTIVATIONS,
    DEFAULT_MAPS,
    probability_entropy,
    uncertainty_channels,
    uncertainty_num_classes,
)
from monai_seg.metrics.uncertainty import max_uncertainty

__all__ = ["ProbabilityEntropyd", "SplitUncertaintyd"]


class SplitUncertaintyd(MapTransform):
    """Split a channel-first Monte-Carlo output into the mean probability and one key per uncertainty map.

    For each key, the ``mean`` channels replace the value under ``key`` (so ``AsDiscreted(keys=key)`` then
    thresholds or argmaxes the prediction as usual) and every other map goes to ``f"{key}_{map}"``:
    ``pred`` -> ``pred`` (mean), ``pred_std``, ``pred_entropy``, ``pred_mutual_info``. A ``MetaTensor`` keeps its
    metadata (affine, filename) in every part, so ``Invertd`` and ``SaveImaged`` treat the maps like the
    prediction: NIfTI maps get the affine of the input and overlay it in 3D Slicer.

    Args:
        keys: keys holding inferer outputs, (C_out, *spatial) after ``decollate_batch``.
        activation: the inferer's activation.
        maps: the inferer's maps, in its output order.
        normalize: divide each uncertainty map by its largest possible value (0.5 for ``std``, ln 2 or ln C
            for the entropies), so that it lies in [0, 1]: for 8/16-bit PNG with ``SaveImaged(scale=255)``.
        allow_missing_keys: don't raise for missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        activation: str = "sigmoid",
        maps: Sequence[str] = DEFAULT_MAPS,
        normalize: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        uncertainty_channels(1, activation, maps)  # validates
        self.activation = activation
        self.maps = tuple(maps)
        self.normalize = normalize

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            out = d[key]
            num_classes = uncertainty_num_classes(out.shape[0], self.activation, self.maps)
            for name, channels in uncertainty_channels(num_classes, self.activation, self.maps).items():
                part = out[channels]
                if self.normalize and name != "mean":
                    part = part / max_uncertainty(name, self.activation, num_classes)
                d[key if name == "mean" else f"{key}_{name}"] = part
        return d


class ProbabilityEntropyd(MapTransform):
    """Store the entropy (nats) of a probability map under ``f"{key}_entropy"``, before it is binarised.

    The uncertainty of a deterministic prediction, one forward pass: the entropy of its probabilities, highest
    where the probability is near 0.5 (``"sigmoid"``) or spread over the classes (``"softmax"``). It gives the
    bundles without Monte-Carlo sampling a map for the case-level triage score
    (:func:`~monai_seg.metrics.compute_triage_score`); it sees aleatoric and epistemic doubt together, as the
    MC ``entropy`` map does. Place it after ``Activationsd`` and ``Invertd`` (the map on the label's grid) and
    before the transform that binarises ``key``.

    Args:
        keys: keys of the probability maps, shape (C, *spatial).
        activation: ``"sigmoid"`` (one entropy channel per channel) or ``"softmax"`` (one channel, the
            entropy over the classes).
        channels: use only the first ``channels`` channels (e.g. 1 to leave out TwoHeadUNet's presence
            channel, the last one); None uses all.
        allow_missing_keys: don't raise for missing keys.

    Raises:
        ValueError: for an unknown ``activation`` or ``channels`` < 1.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        activation: str = "sigmoid",
        channels: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}.")
        if channels is not None and channels < 1:
            raise ValueError(f"channels must be None or >= 1, got {channels}.")
        self.activation = activation
        self.channels = channels

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            p = d[key][: self.channels]
            d[f"{key}_entropy"] = probability_entropy(p[None].float(), self.activation)[0]
        return d
