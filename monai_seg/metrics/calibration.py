"""Post-hoc calibration: temperature scaling fitted on validation pixels, and the calibration error it is judged by.

Temperature scaling (Guo et al., ICML 2017) divides the logits by a temperature T > 0 learnt after training by
minimising the negative log-likelihood (NLL) on held-out data; the network is not changed. Here:

- ``"sigmoid"`` (independent channels: binary masks, BraTS regions, the nerve net's presence channel): one
  temperature per channel, each fitted on its own binary cross-entropy;
- ``"softmax"`` (mutually exclusive classes): ONE temperature for all classes. A single T keeps the argmax, so the
  segmentation masks (and their Dice) do not change, only the probabilities; a vector of per-class temperatures
  would move the decision boundaries, which is a retraining in disguise.

For sigmoid channels the 0.5 threshold (logit 0) is kept as well, so calibration never changes a mask of a
single-pass model (a Monte-Carlo mean of calibrated samples can move slightly).

The calibration error is measured per channel (class-wise, one-vs-rest for softmax) over the pixels of a whole
data set: :class:`CalibrationStats` accumulates equal-width reliability bins (MONAI's
:func:`~monai.metrics.calibration_binning` per image, summed) and the squared error, and gives the expected
calibration error ECE = sum_b n_b / N |mean p_b - frequency_b| and the Brier score mean (p - y)^2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import ignite.distributed as idist
import torch
import torch.nn.functional as F
from monai.metrics import calibration_binning

from monai_seg.inferers.mc_dropout import ACTIVATIONS
from monai_seg.losses.two_head import split_presence

__all__ = [
    "CalibrationStats",
    "calibration_target",
    "fit_temperature",
    "negative_log_likelihood",
    "rescale_probabilities",
    "sample_pixels",
    "separated_channels",
]


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}.")


def calibration_target(label: torch.Tensor, num_channels: int, activation: str) -> torch.Tensor:
    """The per-channel binary target of a prediction with ``num_channels`` channels.

    - ``"softmax"``: a class-index label (B, 1, *spatial) is one-hot encoded; a one-hot label is kept.
    - ``"sigmoid"``: a binary label with as many channels is kept; with one channel fewer, the prediction's last
      channel is an image-level presence channel (:class:`~monai_seg.networks.TwoHeadUNet`) and its target is
      "the label is not empty", broadcast over space.

    Args:
        label: (B, L, *spatial).
        num_channels: channels C of the prediction.
        activation: ``"sigmoid"`` or ``"softmax"``.

    Returns:
        (B, C, *spatial) float tensor of 0 and 1.

    Raises:
        ValueError: when the label's channels match neither case.
    """
    _check_activation(activation)
    label = torch.as_tensor(label).float()
    channels = label.shape[1]
    if activation == "softmax" and channels == 1 and num_channels > 1:
        return F.one_hot(label[:, 0].long(), num_channels).movedim(-1, 1).float()
    if channels == num_channels:
        return (label > 0.5).float()
    if activation == "sigmoid" and channels == num_channels - 1:
        present = (label > 0.5).flatten(1).any(1).float().view(-1, 1, *([1] * (label.dim() - 2)))
        return torch.cat([(label > 0.5).float(), present.expand_as(label[:, :1])], dim=1)
    raise ValueError(f"a label of {channels} channels does not fit a {activation} prediction of {num_channels}.")


def sample_pixels(
    logits: torch.Tensor,
    target: torch.Tensor,
    max_pixels: int,
    generator: torch.Generator | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """At most ``max_pixels`` pixels of each image, drawn uniformly without replacement.

    Args:
        logits: (B, C, *spatial).
        target: (B, C, *spatial), e.g. from :func:`calibration_target`.
        max_pixels: pixels kept per image.
        generator: random generator of the draw (seed it for a reproducible fit).
        mask: (B, 1, *spatial), nonzero where pixels may be drawn (e.g. a field of view); None for all.

    Returns:
        logits and target of the kept pixels, each (N, C), N <= B * max_pixels.
    """
    logits, target = logits.flatten(2).float(), target.flatten(2).float()
    allowed = torch.ones(logits.shape[::2], dtype=torch.bool) if mask is None else mask.flatten(1).cpu() != 0
    kept_logits, kept_target = [], []
    for b in range(logits.shape[0]):
        candidates = allowed[b].nonzero()[:, 0]
        if len(candidates) > max_pixels:
            candidates = candidates[torch.randperm(len(candidates), generator=generator)[:max_pixels]]
        index = candidates.to(logits.device)
        kept_logits.append(logits[b][:, index].T)
        kept_target.append(target[b][:, index].T)
    return torch.cat(kept_logits), torch.cat(kept_target)


def _scale(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """``logits`` (N, C, ...) divided by ``temperature`` (1 or C values) along the channel axis."""
    return logits / temperature.to(logits).view(1, -1, *([1] * (logits.dim() - 2)))


def negative_log_likelihood(
    logits: torch.Tensor, target: torch.Tensor, activation: str, temperature: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean NLL of ``logits / temperature``: per channel for ``"sigmoid"`` (C,), over the classes for ``"softmax"``
    (1,).

    Args:
        logits: (N, C) or (B, C, *spatial).
        target: binary, the same shape (one-hot for softmax).
        activation: ``"sigmoid"`` or ``"softmax"``.
        temperature: 1 or C positive values; None for 1.
    """
    _check_activation(activation)
    if temperature is not None:
        logits = _scale(logits, temperature)
    num_channels = logits.shape[1]
    logits, target = logits.movedim(1, -1).reshape(-1, num_channels), target.movedim(1, -1).reshape(-1, num_channels)
    if activation == "sigmoid":
        return F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none").mean(0)
    return F.cross_entropy(logits.float(), target.argmax(1)).view(1)


def fit_temperature(
    logits: torch.Tensor,
    target: torch.Tensor,
    activation: str = "sigmoid",
    bounds: tuple[float, float] = (0.01, 100.0),
    max_iter: int = 100,
) -> torch.Tensor:
    """The temperature minimising the NLL of ``logits / T`` (L-BFGS on log T, so that T stays positive).

    The NLL is convex in 1 / T and each channel's temperature is fitted on its own, so clipping the optimum to
    ``bounds`` gives the optimum within them. A model whose logits carry no information (barely trained, or a
    constant channel) has its optimum at T -> infinity (probabilities of one half); the upper bound stops it there.
    A channel that classifies every pixel right (:func:`separated_channels`, e.g. the nerve net's presence on a
    few validation images) has no optimum at all: its NLL keeps falling as T -> 0, and a fit would make it as
    confident as the bound allows on data it has not seen. It keeps T = 1.

    Args:
        logits: (N, C) pixels (e.g. from :func:`sample_pixels`).
        target: (N, C) binary; one-hot for ``"softmax"``.
        activation: ``"sigmoid"``: one temperature per channel (independent binary problems); ``"softmax"``:
            one temperature for all classes (the argmax is kept).
        bounds: the smallest and largest temperature returned.
        max_iter: L-BFGS iterations.

    Returns:
        (C,) temperatures for ``"sigmoid"``, (1,) for ``"softmax"``.

    Raises:
        ValueError: for an unknown activation, no pixels or bounds that are not 0 < low <= high.
    """
    _check_activation(activation)
    if not 0 < bounds[0] <= bounds[1]:
        raise ValueError(f"temperature bounds must satisfy 0 < low <= high, got {bounds}.")
    if logits.numel() == 0:
        raise ValueError("no pixels to fit the temperature on.")
    logits, target = logits.detach().double(), target.detach().double()
    log_t = torch.zeros(logits.shape[1] if activation == "sigmoid" else 1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = negative_log_likelihood(logits, target, activation, log_t.exp()).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = log_t.detach().exp().clamp(*bounds)
    return torch.where(separated_channels(logits, target, activation), 1.0, temperature).float()


def separated_channels(logits: torch.Tensor, target: torch.Tensor, activation: str = "sigmoid") -> torch.Tensor:
    """Whether the logits classify every pixel right, per fitted temperature (see :func:`fit_temperature`).

    Args:
        logits: (N, C) pixels.
        target: (N, C) binary; one-hot for ``"softmax"``.
        activation: ``"sigmoid"`` (per channel: every positive pixel has a logit > 0, every negative one < 0) or
            ``"softmax"`` (the argmax is the target class for every pixel).

    Returns:
        (C,) bool for ``"sigmoid"``, (1,) for ``"softmax"``.
    """
    _check_activation(activation)
    if activation == "sigmoid":
        return ((2 * target - 1) * logits > 0).all(dim=0)
    return (logits.argmax(dim=1) == target.argmax(dim=1)).all()[None]


def rescale_probabilities(prob: torch.Tensor, factor: torch.Tensor | Sequence[float], activation: str) -> torch.Tensor:
    """The probabilities of logits multiplied by ``factor``, from the probabilities alone.

    ``factor = 1 / T`` applies a temperature to a prediction given as probabilities, ``factor = T`` undoes it:
    sigmoid ``p -> sigmoid(factor * logit(p))`` per channel, softmax ``p -> softmax(factor * log p)`` (exact, since
    log p differs from the logits by a constant per pixel).

    Args:
        prob: (B, C, *spatial) probabilities.
        factor: 1 or C values.
        activation: ``"sigmoid"`` or ``"softmax"``.
    """
    _check_activation(activation)
    factor = torch.as_tensor(factor, dtype=torch.float32)
    eps = torch.finfo(torch.float32).eps
    prob = torch.as_tensor(prob).float().clamp(eps, 1 - eps)
    if activation == "sigmoid":
        return torch.sigmoid(_scale(torch.logit(prob), 1 / factor))
    return torch.softmax(_scale(prob.log(), 1 / factor), dim=1)


class CalibrationStats:
    """Reliability bins and squared error of probabilities against binary targets, pooled over a data set.

    Args:
        num_bins: equal-width bins of [0, 1].

    Example::

        stats = CalibrationStats(15)
        stats.update(prob, target)  # (B, C, *spatial) each, repeatedly
        stats.ece(), stats.brier()  # (C,) each
    """

    def __init__(self, num_bins: int = 15) -> None:
        if num_bins < 1:
            raise ValueError(f"num_bins must be at least 1, got {num_bins}.")
        self.num_bins = num_bins
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.counts: torch.Tensor | None = None  # (C, K)
        self.prob_sums: torch.Tensor | None = None  # (C, K)
        self.target_sums: torch.Tensor | None = None  # (C, K)
        self.squared_error: torch.Tensor | None = None  # (C,)

    def update(self, prob: torch.Tensor, target: torch.Tensor) -> None:
        """Add the pixels of a batch.

        Args:
            prob: (B, C, *spatial) probabilities in [0, 1].
            target: (B, C, *spatial) binary.

        Raises:
            ValueError: when the shapes differ or the channel count changes.
        """
        prob = torch.as_tensor(prob).float().cpu().contiguous()
        target = torch.as_tensor(target).float().cpu().contiguous()
        if prob.shape != target.shape:
            raise ValueError(f"probabilities {tuple(prob.shape)} and target {tuple(target.shape)} differ in shape.")
        mean_p, mean_y, counts = calibration_binning(prob, target, num_bins=self.num_bins)
        counts = counts.double()
        parts = (
            counts.sum(0),
            (mean_p.double().nan_to_num() * counts).sum(0),
            (mean_y.double().nan_to_num() * counts).sum(0),
            (prob.double() - target.double()).square().flatten(2).sum(2).sum(0),
        )
        if self.counts is None:
            self.counts, self.prob_sums, self.target_sums, self.squared_error = parts
        elif self.counts.shape != parts[0].shape:
            raise ValueError(f"{prob.shape[1]} channels, earlier batches had {self.counts.shape[0]}.")
        else:
            self.counts, self.prob_sums, self.target_sums, self.squared_error = (
                a + b for a, b in zip((self.counts, self.prob_sums, self.target_sums, self.squared_error), parts)
            )

    def all_reduce(self) -> None:
        """Sum the statistics of all ranks (a collective call under ``torchrun``; nothing on one process)."""
        if idist.get_world_size() > 1:
            self.counts, self.prob_sums, self.target_sums, self.squared_error = (
                idist.all_reduce(t) for t in self._require()
            )

    def _require(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.counts is None:
            raise ValueError("no pixels accumulated yet.")
        return self.counts, self.prob_sums, self.target_sums, self.squared_error  # type: ignore[return-value]

    def ece(self) -> torch.Tensor:
        """Expected calibration error per channel, (C,)."""
        counts, prob_sums, target_sums, _ = self._require()
        return ((prob_sums - target_sums).abs().sum(1) / counts.sum(1).clamp_min(1)).float()

    def brier(self) -> torch.Tensor:
        """Brier score (mean squared error of the probability) per channel, (C,)."""
        counts, _, _, squared_error = self._require()
        return (squared_error / counts.sum(1).clamp_min(1)).float()

    def reliability(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The reliability diagram of all channels pooled: per bin the mean probability, the frequency of the
        target (NaN for an empty bin) and the pixel count, each (K,)."""
        counts, prob_sums, target_sums, _ = self._require()
        n = counts.sum(0)
        empty = torch.full_like(n, math.nan)
        mean_p = torch.where(n > 0, prob_sums.sum(0) / n.clamp_min(1), empty)
        frequency = torch.where(n > 0, target_sums.sum(0) / n.clamp_min(1), empty)
        return mean_p.float(), frequency.float(), n
