"""Figures: training curves, overlay grids (image, ground truth, prediction, presence) and the uncertainty
figure of a 3D volume (input, mean probability, uncertainty map), as the studies show.

Each figure is a ``matplotlib.figure.Figure`` saved by its own Agg canvas, outside pyplot: drawing one
works without a display and leaves the user's backend (a notebook's) as it is. The handlers that draw
them during a run are in :mod:`monai_seg.handlers.figures`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import nibabel as nib
import numpy as np
import torch
from matplotlib.figure import Figure
from monai.data import MetaTensor

from monai_seg.metrics.calibration import CalibrationStats
from monai_seg.metrics.triage import RetentionCurve
from monai_seg.utils import atomic_save

__all__ = [
    "new_figure",
    "save_figure",
    "save_overlay_grid",
    "save_reliability_diagram",
    "save_retention_curve",
    "save_training_curves",
    "save_uncertainty_figure",
]


def new_figure(nrows: int = 1, ncols: int = 1, squeeze: bool = True, **figure_kwargs: Any) -> tuple[Figure, Any]:
    """A figure and its axes, as ``matplotlib.pyplot.subplots`` but outside pyplot: no backend is chosen
    or changed (a notebook keeps its own), no figure is registered, and nothing needs closing.

    Args:
        nrows, ncols, squeeze: the grid of axes, as in ``Figure.subplots``.
        figure_kwargs: ``Figure`` arguments such as ``figsize`` and ``layout``.
    """
    fig = Figure(**figure_kwargs)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def save_figure(fig: Figure, filename: str) -> None:
    """Save a figure atomically (:func:`monai_seg.utils.atomic_save`), creating its folder; the format is
    the file name's suffix (``.png``)."""
    os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
    atomic_save(filename, lambda tmp: fig.savefig(tmp, dpi=100, bbox_inches="tight"))


def save_training_curves(history: dict[str, Sequence[float]], filename: str) -> None:
    """Plot each named series of ``history`` against the epoch, one panel a series.

    Args:
        history: series name (e.g. ``"train_loss"``, ``"val_kaggle_dice"``) -> one value per epoch.
        filename: PNG file to write.
    """
    names = [name for name, values in history.items() if len(values)]
    fig, axes = new_figure(1, max(len(names), 1), figsize=(4.5 * max(len(names), 1), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        values = history[name]
        ax.plot(range(1, len(values) + 1), values, marker="o")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    save_figure(fig, filename)


def _to_2d(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """First channel of a (C, W, H) array, transposed to (H, W) for display (MONAI's PIL layout is W, H)."""
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return array[0].T if array.ndim == 3 else array.T


def save_overlay_grid(
    images: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor] | None,
    preds: Sequence[torch.Tensor],
    filename: str,
    presence: Sequence[float] | None = None,
    titles: Sequence[str] | None = None,
) -> None:
    """One row per image: the image, the ground truth over it, the prediction over it.

    Args:
        images: channel-first images (C, W, H) in MONAI's 2D layout.
        labels: ground-truth masks (1, W, H), binary or class maps (0..N-1), or None (inference).
        preds: predicted masks (1, W, H), binary or class maps.
        filename: PNG file to write.
        presence: presence probability per image, shown in the prediction panel's title.
        titles: a name per row (e.g. the file name).
    """
    columns = ["image"] + (["ground truth"] if labels is not None else []) + ["prediction"]
    fig, axes = new_figure(len(images), len(columns), figsize=(3.2 * len(columns), 2.5 * len(images)), squeeze=False)
    for row, image in enumerate(images):
        panels = [None] + ([labels[row]] if labels is not None else []) + [preds[row]]
        for col, (name, mask) in enumerate(zip(columns, panels)):
            ax = axes[row, col]
            ax.imshow(_to_2d(image), cmap="gray")
            if mask is not None:
                mask_2d = _to_2d(mask)
                levels = np.arange(0.5, max(float(mask_2d.max()), 1.0))  # every class boundary of a class map
                ax.contour(mask_2d, levels=levels, colors="lime" if name == "ground truth" else "red", linewidths=1)
            title = name if titles is None or col else f"{titles[row]}"
            if name == "prediction" and presence is not None:
                title += f" (presence {presence[row]:.2f})"
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    save_figure(fig, filename)


_CONTOUR_COLOURS = ("lime", "red", "cyan", "yellow")


def _to_ras(x: torch.Tensor | np.ndarray, affine: np.ndarray | None) -> np.ndarray:
    """(C, *spatial) array reoriented to RAS axes (a permutation and flips, no resampling)."""
    array = torch.as_tensor(x).detach().cpu().float().numpy()
    if affine is None:
        return array
    ornt = nib.orientations.io_orientation(np.asarray(affine))
    return np.stack([nib.orientations.apply_orientation(channel, ornt) for channel in array])


def _axial(volume: np.ndarray, index: int) -> np.ndarray:
    """Axial slice ``index`` of a RAS (*spatial) volume, in radiological display (patient right on the left)."""
    return volume[:, :, index].T[::-1, ::-1]


def _slices_to_show(mask: np.ndarray, num_slices: int) -> list[int]:
    """``num_slices`` axial indices spread over the extent of ``mask`` (H, W, D); the middle slice if empty."""
    present = np.flatnonzero(mask.any((0, 1)))
    if present.size == 0:
        return [mask.shape[2] // 2]
    chosen = np.linspace(present[0], present[-1], num_slices + 2)[1:-1] if present.size > num_slices else present
    return sorted({int(round(k)) for k in chosen})


def save_uncertainty_figure(
    image: torch.Tensor,
    prob: torch.Tensor,
    uncertainty: torch.Tensor,
    filename: str,
    label: torch.Tensor | None = None,
    channel: int = 0,
    image_channel: int = 0,
    num_slices: int = 3,
    threshold: float = 0.5,
    uncertainty_name: str = "uncertainty",
    title: str | None = None,
) -> None:
    """The BraTS study's figure for one volume: a row per axial slice with the input and the ground-truth
    outline, the prediction (mean probability and its outline) and the uncertainty map.

    Slices are spread over the tumour (ground truth, else prediction); volumes are shown in RAS axes in
    radiological convention (patient right on the left). Outlines of the ground truth (first column) and of
    the prediction (second column, over the mean probability) are drawn for every channel, in the colours
    green, red, cyan, yellow in channel order; the probability and uncertainty maps show ``channel``.

    Args:
        image: (C_in, H, W, D) input; a MetaTensor's affine orients the display.
        prob: (C, H, W, D) mean probability on the image's grid.
        uncertainty: (C, H, W, D) uncertainty map.
        filename: PNG file to write.
        label: (C, H, W, D) binary ground truth, or None.
        channel: channel of ``prob`` / ``uncertainty`` shown as heat maps.
        image_channel: input channel in the background (0: FLAIR in BraTS order).
        num_slices: rows of the figure.
        threshold: probability threshold of the prediction outline.
        uncertainty_name: title of the uncertainty column.
        title: figure title (e.g. the case).
    """
    affine = image.affine.numpy() if isinstance(image, MetaTensor) else None
    background = _to_ras(image, affine)[image_channel]
    prob_ras, unc_ras = _to_ras(prob, affine), _to_ras(uncertainty, affine)
    label_ras = None if label is None else _to_ras(label, affine) > 0.5
    tumour = label_ras if label_ras is not None and label_ras.any() else prob_ras > threshold
    shown = _slices_to_show(tumour.any(0), num_slices)
    top = max(float(unc_ras[channel].max()), 1e-6)
    first = "input + ground truth" if label is not None else "input"
    columns = [first, "mean probability + prediction", uncertainty_name]
    fig, axes = new_figure(len(shown), 3, figsize=(10.0, 3.0 * len(shown)), squeeze=False, layout="constrained")
    for row, k in enumerate(shown):
        axes[row, 0].imshow(_axial(background, k), cmap="gray")
        prob_image = axes[row, 1].imshow(_axial(prob_ras[channel], k), cmap="viridis", vmin=0, vmax=1)
        unc_image = axes[row, 2].imshow(_axial(unc_ras[channel], k), cmap="magma", vmin=0, vmax=top)
        for c in range(len(prob_ras)):
            colour = _CONTOUR_COLOURS[c % len(_CONTOUR_COLOURS)]
            if label_ras is not None:
                axes[row, 0].contour(_axial(label_ras[c], k).astype(float), levels=[0.5], colors=colour, linewidths=1)
            axes[row, 1].contour(_axial(prob_ras[c], k), levels=[threshold], colors=colour, linewidths=1)
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{columns[col]}, slice {k}" if col == 0 else columns[col], fontsize=8)
    fig.colorbar(prob_image, ax=axes[:, 1], shrink=0.8)
    fig.colorbar(unc_image, ax=axes[:, 2], shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    save_figure(fig, filename)


def save_retention_curve(curve: RetentionCurve, filename: str, quality_name: str = "Dice", title: str = "") -> None:
    """Plot a retention curve beside its random and oracle references, with their areas in the legend.

    Args:
        curve: from :func:`monai_seg.metrics.compute_retention_curve`.
        filename: PNG file to write.
        quality_name: the per-case quality, for the y axis (e.g. ``"Dice"``, ``"Dice WT"``).
        title: the figure's title.
    """
    fig, ax = new_figure(figsize=(5, 4))
    for values, name, style, auc in (
        (curve.oracle, "oracle", ":", curve.oracle_auc),
        (curve.kept, "uncertainty", "-", curve.auc),
        (curve.random, "random", "--", curve.random_auc),
    ):
        ax.plot(curve.fractions, values, style, label=f"{name} (AUC {auc:.3f})")
    ax.set_xlabel("fraction of cases referred")
    ax.set_ylabel(f"mean {quality_name} of the cases kept")
    ax.set_xlim(0, 1)
    ax.set_title(title or f"retention curve, {len(curve.kept)} cases")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    save_figure(fig, filename)


def save_reliability_diagram(curves: dict[str, CalibrationStats], filename: str, title: str = "") -> None:
    """Plot reliability diagrams (frequency of the label against the mean probability per bin, all channels
    pooled) on one axis, e.g. before and after calibration, with the ECE and Brier score in the legend.

    Args:
        curves: name -> accumulated statistics, e.g. ``{"before": ..., "after": ...}``.
        filename: PNG file to write.
        title: the figure's title.
    """
    fig, ax = new_figure(figsize=(5, 4.5))
    ax.plot([0, 1], [0, 1], ":", color="gray", label="perfect calibration")
    for name, stats in curves.items():
        mean_p, frequency, _ = stats.reliability()
        shown = ~torch.isnan(mean_p)
        label = f"{name} (ECE {stats.ece().mean():.4f}, Brier {stats.brier().mean():.4f})"
        ax.plot(mean_p[shown].numpy(), frequency[shown].numpy(), "o-", markersize=3, label=label)
    ax.set_xlabel("mean predicted probability (bin)")
    ax.set_ylabel("frequency of the label")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title or "reliability diagram")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    save_figure(fig, filename)
