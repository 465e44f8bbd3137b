"""Figures: training curves, overlay grids (image, ground truth, prediction, presence) and the uncertainty
figure of a 3D volume (input, mean probability, uncertainty map), as the studies show."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import nibabel as nib
import numpy as np
import torch
from matplotlib.figure import Figure
from monai.data import MetaTensor
from monai.handlers import from_engine
from monai.utils import min_version, optional_import

from monai_seg.metrics.brats import item_case_name

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = [
    "OverlayGrid",
    "RedrawThrottle",
    "TrainingCurves",
    "UncertaintyFigures",
    "new_figure",
    "save_figure",
    "save_overlay_grid",
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
    """Save a figure atomically (a temporary file renamed into place)."""
    os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
    root, ext = os.path.splitext(filename)
    tmp = f"{root}.tmp{ext}"
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    os.replace(tmp, filename)


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


class RedrawThrottle:
    """When a figure that changes during a run is redrawn: at most once every ``min_seconds``.

    Drawing a figure costs about 1-2 s on a CPU, which would dominate short epochs if done at every
    event; the handlers ask :meth:`due` before drawing and call :meth:`drawn` after.

    Args:
        min_seconds: least time between two drawings; 0 draws at every request.
    """

    def __init__(self, min_seconds: float) -> None:
        self.min_seconds = min_seconds
        self._drawn_at = -float("inf")

    def due(self) -> bool:
        """Whether ``min_seconds`` have passed since the last drawing (True before the first)."""
        return time.monotonic() - self._drawn_at >= self.min_seconds

    def drawn(self) -> None:
        """Record that the figure has just been drawn."""
        self._drawn_at = time.monotonic()


class TrainingCurves:
    """Record and log the mean training loss per epoch and the evaluator's metrics; redraw the curves PNG.

    Attach to the trainer (``train_handlers``), after the ``ValidationHandler`` so the epoch's
    validation metrics are in ``evaluator.state.metrics``. The history is recorded every epoch; the PNG
    is redrawn at most once every ``min_seconds`` and always when the run ends (also by early
    stopping), so drawing (about 1 s on a CPU) does not dominate short epochs.

    Args:
        filename: PNG file of the curves.
        evaluator: the validation engine whose ``state.metrics`` are plotted (optional).
        loss_transform: extracts the loss from ``engine.state.output``.
        min_seconds: least time between two redraws during the run; 0 redraws every epoch.
    """

    def __init__(
        self,
        filename: str,
        evaluator: Engine | None = None,
        loss_transform: Callable = from_engine("loss", first=True),
        min_seconds: float = 30.0,
    ) -> None:
        self.filename = filename
        self.evaluator = evaluator
        self.loss_transform = loss_transform
        self.throttle = RedrawThrottle(min_seconds)
        self.history: dict[str, list[float]] = {"train_loss": []}
        self._losses: list[float] = []
        self._drawn_epochs = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._record_loss)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self._draw)

    def _record_loss(self, engine: Engine) -> None:
        self._losses.append(float(self.loss_transform(engine.state.output)))

    def __call__(self, engine: Engine) -> None:
        self.history["train_loss"].append(float(np.mean(self._losses)) if self._losses else float("nan"))
        self._losses = []
        engine.logger.info(f"Epoch {engine.state.epoch}: mean train_loss {self.history['train_loss'][-1]:.4f}")
        if self.evaluator is not None:
            for name, value in self.evaluator.state.metrics.items():
                if isinstance(value, (int, float)):
                    self.history.setdefault(name, []).append(float(value))
        if self.throttle.due():
            self._draw(engine)

    def _draw(self, _engine: Engine) -> None:
        if self._drawn_epochs == len(self.history["train_loss"]):
            return
        save_training_curves(self.history, self.filename)
        self.throttle.drawn()
        self._drawn_epochs = len(self.history["train_loss"])


class OverlayGrid:
    """Save an overlay grid of the first ``num_images`` images of each run of an evaluator.

    Attached to the evaluator itself, every kept run is drawn when it completes. Attached to the trainer
    with ``evaluator`` given (in ``train_handlers``), the grid of the evaluator's latest kept run is drawn
    at most once every ``min_seconds`` and always when training ends (also by early stopping): with
    ``only_best`` the file then shows the validation of the checkpoint kept as the best model without
    paying about 1-2 s of drawing at every new best.

    Args:
        filename: PNG file of the grid.
        num_images: rows of the grid.
        presence_key: key of the presence probability in each decollated output, if any.
        only_best: keep only the runs whose key metric is a new best (``engine.state.best_metric_epoch``
            is the run's epoch), i.e. the validation of the checkpoint kept as the best model.
        evaluator: the validation engine whose runs are drawn, when attached to the trainer.
        min_seconds: with ``evaluator``, least time between two drawings during training.
    """

    def __init__(
        self,
        filename: str,
        num_images: int = 6,
        presence_key: str | None = "presence",
        only_best: bool = False,
        evaluator: Engine | None = None,
        min_seconds: float = 30.0,
    ) -> None:
        self.filename = filename
        self.num_images = num_images
        self.presence_key = presence_key
        self.only_best = only_best
        self.evaluator = evaluator
        self.throttle = RedrawThrottle(min_seconds if evaluator is not None else 0.0)
        self._items: list[dict] = []
        self._kept: list[dict] = []

    def attach(self, engine: Engine) -> None:
        source = engine if self.evaluator is None else self.evaluator
        source.add_event_handler(Events.STARTED, self._reset)
        source.add_event_handler(Events.ITERATION_COMPLETED, self)
        source.add_event_handler(Events.COMPLETED, self._keep)
        if self.evaluator is not None:
            engine.add_event_handler(Events.COMPLETED, self._draw)

    def _reset(self, _engine: Engine) -> None:
        self._items = []

    def __call__(self, engine: Engine) -> None:
        for item in engine.state.output:
            if len(self._items) < self.num_images:
                self._items.append(item)

    def _keep(self, engine: Engine) -> None:
        if not self._items or (self.only_best and engine.state.best_metric_epoch != engine.state.epoch):
            return
        self._kept = self._items
        if self.throttle.due():
            self._draw(engine)

    def _draw(self, _engine: Engine) -> None:
        if not self._kept:
            return
        items, self._kept = self._kept, []
        has_label = all("label" in item for item in items)
        has_presence = self.presence_key is not None and all(self.presence_key in item for item in items)
        save_overlay_grid(
            [item["image"] for item in items],
            [item["label"] for item in items] if has_label else None,
            [item["pred"] for item in items],
            self.filename,
            presence=[float(item[self.presence_key]) for item in items] if has_presence else None,
            titles=[os.path.basename(str(item["image"].meta.get("filename_or_obj", i)))
                    if hasattr(item["image"], "meta") else str(i) for i, item in enumerate(items)],
        )
        self.throttle.drawn()


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


class UncertaintyFigures:
    """Ignite handler that saves :func:`save_uncertainty_figure` as ``<output_dir>/<case>_uncertainty.png``
    for every case of an evaluator run (inference or evaluation).

    It reads the decollated ``engine.state.output`` items after ``postprocessing``, with the image and
    all maps on one grid (``Invertd`` them first); the label is drawn when the item has one.

    Args:
        output_dir: folder of the PNG files.
        prob_key: key of the mean probability.
        uncertainty_key: key of the uncertainty map shown.
        label_key: key of the binary ground truth (optional in the items).
        image_key: key of the input image; its ``filename_or_obj`` names the case.
        channel: probability / uncertainty channel shown as heat maps.
        num_slices: axial slices per figure.
        threshold: probability threshold of the prediction outline.
    """

    def __init__(
        self,
        output_dir: str,
        prob_key: str = "pred_prob",
        uncertainty_key: str = "pred_std",
        label_key: str = "label",
        image_key: str = "image",
        channel: int = 0,
        num_slices: int = 3,
        threshold: float = 0.5,
    ) -> None:
        self.output_dir = output_dir
        self.prob_key = prob_key
        self.uncertainty_key = uncertainty_key
        self.label_key = label_key
        self.image_key = image_key
        self.channel = channel
        self.num_slices = num_slices
        self.threshold = threshold

    def attach(self, engine: Engine) -> None:
        """
        Args:
            engine: Ignite Engine, usually an evaluator.
        """
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        """
        Save the figures of the current iteration.

        Args:
            engine: Ignite Engine, usually an evaluator.
        """
        for index, item in enumerate(engine.state.output):
            case = item_case_name(item, self.image_key) or f"{engine.state.iteration}_{index}"
            save_uncertainty_figure(
                item[self.image_key],
                item[self.prob_key],
                item[self.uncertainty_key],
                os.path.join(self.output_dir, f"{case}_uncertainty.png"),
                label=item.get(self.label_key),
                channel=self.channel,
                num_slices=self.num_slices,
                threshold=self.threshold,
                uncertainty_name=self.uncertainty_key.split("_", 1)[-1],
                title=case,
            )


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
