"""Test-time augmentation combined with Monte-Carlo dropout: aleatoric, epistemic and augmentation uncertainty.

:class:`TTAMCDropoutInferer` runs :class:`~monai_seg.inferers.MCDropoutInferer`'s sampling on every augmented
copy of the input (flips, small rotations and scalings), maps each copy's sample moments back onto the input
grid and returns one tensor: the mean probability over all samples and the maps of
:func:`~monai_seg.inferers.uncertainty_channels`, among them ``tta_std``, the spread between augmentations.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
from monai.inferers import Inferer
from monai.networks.layers import AffineTransform
from monai.transforms.utils import create_rotate, create_scale
from monai.utils import ensure_tuple

from monai_seg.inferers.mc_dropout import MAP_NAMES, MCDropoutInferer
from monai_seg.inferers.prefix import DEFAULT_DROPOUT_TYPES

__all__ = [
    "TTA_MAPS",
    "AffineAugmentation",
    "FlipAugmentation",
    "IdentityAugmentation",
    "InvertibleAugmentation",
    "TTAMCDropoutInferer",
]

TTA_MAPS = ("mean", "entropy", "mutual_info", "expected_entropy", "tta_std")
"""Default maps of :class:`TTAMCDropoutInferer`: mean, total, epistemic, aleatoric and augmentation spread."""


class InvertibleAugmentation(ABC):
    """A spatial augmentation of a batch that :class:`TTAMCDropoutInferer` can undo on the outputs.

    ``inverse`` must move voxels without mixing them (every output voxel is a copy of one voxel of its input,
    as a flip or a nearest-neighbour resampling): then it commutes with every voxel-wise function, and
    inverting the sample moments gives exactly the moments of the inverted samples.
    """

    @abstractmethod
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Augment ``x`` (B, C, *spatial); the result has the same shape."""

    @abstractmethod
    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Map ``y`` (B, C', *spatial), defined on the augmented grid, back onto the grid of the input."""


class IdentityAugmentation(InvertibleAugmentation):
    """The input as it is: TTA with only this augmentation is plain Monte-Carlo dropout."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y


class FlipAugmentation(InvertibleAugmentation):
    """Flip along spatial axes (0 is the first spatial dimension); its own exact inverse.

    Args:
        spatial_axis: one spatial axis or several, flipped together.

    Raises:
        ValueError: when no axis or a negative axis is given.
    """

    def __init__(self, spatial_axis: int | Sequence[int]) -> None:
        self.spatial_axis = tuple(int(a) for a in ensure_tuple(spatial_axis))
        if not self.spatial_axis or min(self.spatial_axis) < 0:
            raise ValueError(f"spatial_axis must be one or more axes >= 0, got {spatial_axis}.")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if max(self.spatial_axis) >= x.dim() - 2:
            raise ValueError(f"cannot flip spatial axes {self.spatial_axis} of an input of shape {tuple(x.shape)}.")
        return torch.flip(x, [a + 2 for a in self.spatial_axis])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self(y)


class AffineAugmentation(InvertibleAugmentation):
    """Rotation and scaling about the centre of the image, undone by the inverse affine with nearest neighbours.

    The input is resampled with ``mode`` (MONAI's ``AffineTransform``, pull convention: the augmented voxel u
    takes the input at A u). The outputs go back through A^-1 with nearest-neighbour resampling, so that
    each voxel takes the output at the augmented voxel nearest to its own position (at most half a voxel
    away per axis); voxels that A moved out of view take the output at the nearest border voxel. This is
    an approximate inverse (the exact ones are flips and 90-degree rotations of square grids), but one
    that copies voxels, as :class:`InvertibleAugmentation` requires, so the maps are exactly those of
    inverting every sample.

    Args:
        rotate: angles in radians, one in 2D; in 3D about the first, second and third spatial axis (missing
            ones are 0), e.g. ``(0, 0, 0.1)`` turns every axial slice of a (H, W, D) volume.
        scale: zoom factor per spatial axis, or one for all; > 1 enlarges the image.
        mode: interpolation of the input, ``"bilinear"`` or ``"nearest"``.
        padding_mode: values of the input outside the image, ``"zeros"``, ``"border"`` or ``"reflection"``.

    Raises:
        ValueError: for a scale <= 0 or an unknown mode.
    """

    def __init__(
        self,
        rotate: float | Sequence[float] = 0.0,
        scale: float | Sequence[float] = 1.0,
        mode: str = "bilinear",
        padding_mode: str = "border",
    ) -> None:
        self.rotate = tuple(float(a) for a in ensure_tuple(rotate))
        self.scale = tuple(float(s) for s in ensure_tuple(scale))
        if min(self.scale) <= 0:
            raise ValueError(f"scale factors must be > 0, got {scale}.")
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}.")
        if padding_mode not in ("zeros", "border", "reflection"):
            raise ValueError(f"padding_mode must be 'zeros', 'border' or 'reflection', got {padding_mode!r}.")
        self.mode = mode
        self.padding_mode = padding_mode

    def matrix(self, spatial_dims: int) -> torch.Tensor:
        """The homogeneous matrix A (spatial_dims + 1, spatial_dims + 1), in voxels about the image centre.

        Raises:
            ValueError: when the angles or scale factors do not fit ``spatial_dims``.
        """
        angles = 1 if spatial_dims == 2 else 3
        if len(self.rotate) > angles or len(self.scale) not in (1, spatial_dims):
            raise ValueError(
                f"rotate {self.rotate} and scale {self.scale} do not fit {spatial_dims} spatial dimensions "
                f"(at most {angles} angle(s); 1 or {spatial_dims} scale factors)."
            )
        rotate = self.rotate[0] if spatial_dims == 2 else self.rotate
        scale = self.scale * spatial_dims if len(self.scale) == 1 else self.scale
        # pull convention: scaling the sampling positions by 1 / s enlarges the image by s
        zoom = create_scale(spatial_dims, [1.0 / s for s in scale], backend="torch")
        return create_rotate(spatial_dims, rotate, backend="torch").double() @ zoom.double()

    def _resample(self, x: torch.Tensor, theta: torch.Tensor, mode: str, padding_mode: str) -> torch.Tensor:
        warp = AffineTransform(normalized=False, mode=mode, padding_mode=padding_mode, zero_centered=True)
        return warp(x, theta.to(x).expand(x.shape[0], -1, -1))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._resample(x, self.matrix(x.dim() - 2), self.mode, self.padding_mode)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self._resample(y, torch.linalg.inv(self.matrix(y.dim() - 2)), "nearest", "border")


class TTAMCDropoutInferer(MCDropoutInferer):
    """Test-time augmentation with Monte-Carlo dropout: total, epistemic, aleatoric and augmentation uncertainty.

    For every augmentation a (A in all), the input is augmented, ``num_samples`` (T) dropout samples run on it
    exactly as in :class:`MCDropoutInferer` (with ``inner``, e.g. ``SlidingWindowInferer``, window by window;
    with ``prefix_sampling``, the deterministic prefix once per augmentation and window, not per sample),
    and the sample moments go back onto the input grid through the augmentation's ``inverse``. The result
    equals, in distribution, the naive double loop ``for a: for t: inverse_a(activation(net(a(x))))``, and
    equals it exactly with the same dropout masks, since the inverses copy voxels (see
    :class:`InvertibleAugmentation`). All A x T samples come from one random stream (``seed``).

    With p_{a,t} the inverted probabilities and m_a = E_t[p_{a,t}], the maps (:func:`uncertainty_channels`
    gives their channels; entropies in nats, per channel for sigmoid, summed over classes for softmax) are:

    - ``mean``: E_{a,t}[p], the prediction.
    - ``entropy``: H[E_{a,t} p], total uncertainty (entropy of the mean over all samples).
    - ``mutual_info``: E_a[H(m_a) - E_t H(p_{a,t})], the epistemic part: the dropout mutual information of
      each augmentation, averaged over the augmentations.
    - ``expected_entropy``: E_{a,t}[H(p)], the aleatoric part.
    - ``tta_std``: sqrt(E_a[m_a^2] - (E_a m_a)^2), population std of the augmentations' mean probabilities.
    - ``std``: population std of all A x T probabilities.

    ``entropy`` = ``expected_entropy`` + ``mutual_info`` + (H[E_a m_a] - E_a H[m_a]); the last term, >= 0, is
    the disagreement between augmentations in entropy terms.

    Args:
        num_samples: T, dropout samples per augmentation, >= 1.
        augmentations: the augmentations, each applied on its own (compose flips by giving several axes to one
            :class:`FlipAugmentation`); include :class:`IdentityAugmentation` for the input as it is. ``None``:
            the identity and a flip along each spatial axis of the input.
        inner: inferer that runs the network on parts of each augmented input; ``None`` runs it whole.
        activation: ``"sigmoid"`` or ``"softmax"``.
        maps: maps to return, in order, from :data:`~monai_seg.inferers.mc_dropout.MAP_NAMES`.
        sample_batch: samples per network call, or ``None`` to tune it.
        seed: seed for the dropout masks, or ``None`` to draw from the global random state.
        prefix_sampling: compute the deterministic prefix once per augmentation (and window).
        dropout_types: module types treated as dropout.

    Raises:
        ValueError: for an empty ``augmentations``; at call time as :class:`MCDropoutInferer`.

    Example::

        augmentations = [IdentityAugmentation(), FlipAugmentation(0), FlipAugmentation(1),
                         AffineAugmentation(rotate=(0, 0, 0.1)), AffineAugmentation(rotate=(0, 0, -0.1))]
        inferer = TTAMCDropoutInferer(20, augmentations, inner=SlidingWindowInferer((96, 96, 96)), seed=0)
        out = inferer(image, net)  # (B, 5 * C, H, W, D) for sigmoid
        layout = uncertainty_channels(C, "sigmoid", TTA_MAPS)
        epistemic, spread = out[:, layout["mutual_info"]], out[:, layout["tta_std"]]
    """

    supported_maps = MAP_NAMES

    def __init__(
        self,
        num_samples: int = 20,
        augmentations: Sequence[InvertibleAugmentation] | None = None,
        inner: Inferer | None = None,
        activation: str = "sigmoid",
        maps: Sequence[str] = TTA_MAPS,
        sample_batch: int | None = None,
        seed: int | None = None,
        prefix_sampling: bool = True,
        dropout_types: Sequence[type[nn.Module]] = DEFAULT_DROPOUT_TYPES,
    ) -> None:
        super().__init__(num_samples, inner, activation, maps, sample_batch, seed, prefix_sampling, dropout_types)
        self.augmentations = None if augmentations is None else tuple(augmentations)
        if self.augmentations is not None and not self.augmentations:
            raise ValueError("augmentations must hold at least one augmentation (or be None for the default).")

    def augmentations_for(self, spatial_dims: int) -> tuple[InvertibleAugmentation, ...]:
        """The augmentations applied to an input with ``spatial_dims`` spatial dimensions."""
        if self.augmentations is not None:
            return self.augmentations
        return (IdentityAugmentation(), *(FlipAugmentation(axis) for axis in range(spatial_dims)))

    def _statistics(self, x: torch.Tensor, moments: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Average the inverted per-augmentation statistics of :class:`MCDropoutInferer` over the augmentations."""
        augmentations = self.augmentations_for(x.dim() - 2)
        total = None
        for augmentation in augmentations:
            stats = augmentation.inverse(super()._statistics(augmentation(x), moments))
            total = stats if total is None else total.add_(stats)
        return total / len(augmentations)
