"""Figures: training curves and overlay grids (image, ground truth, prediction, presence), as the studies show."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from monai.handlers import from_engine  # noqa: E402
from monai.utils import min_version, optional_import  # noqa: E402

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["OverlayGrid", "TrainingCurves", "save_figure", "save_overlay_grid", "save_training_curves"]


def save_figure(fig: plt.Figure, filename: str) -> None:
    """Save a figure atomically (a temporary file renamed into place) and close it."""
    os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
    root, ext = os.path.splitext(filename)
    tmp = f"{root}.tmp{ext}"
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, filename)


def save_training_curves(history: dict[str, Sequence[float]], filename: str) -> None:
    """Plot each named series of ``history`` against the epoch, one panel a series.

    Args:
        history: series name (e.g. ``"train_loss"``, ``"val_kaggle_dice"``) -> one value per epoch.
        filename: PNG file to write.
    """
    names = [name for name, values in history.items() if len(values)]
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(4.5 * max(len(names), 1), 3.5), squeeze=False)
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
        labels: binary ground-truth masks (1, W, H), or None (inference).
        preds: binary predicted masks (1, W, H).
        filename: PNG file to write.
        presence: presence probability per image, shown in the prediction panel's title.
        titles: a name per row (e.g. the file name).
    """
    columns = ["image"] + (["ground truth"] if labels is not None else []) + ["prediction"]
    fig, axes = plt.subplots(len(images), len(columns), figsize=(3.2 * len(columns), 2.5 * len(images)), squeeze=False)
    for row, image in enumerate(images):
        panels = [None] + ([labels[row]] if labels is not None else []) + [preds[row]]
        for col, (name, mask) in enumerate(zip(columns, panels)):
            ax = axes[row, col]
            ax.imshow(_to_2d(image), cmap="gray")
            if mask is not None:
                ax.contour(_to_2d(mask), levels=[0.5], colors="lime" if name == "ground truth" else "red", linewidths=1)
            title = name if titles is None or col else f"{titles[row]}"
            if name == "prediction" and presence is not None:
                title += f" (presence {presence[row]:.2f})"
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    save_figure(fig, filename)


class TrainingCurves:
    """Record and log the mean training loss per epoch and the evaluator's metrics; redraw the curves PNG each epoch.

    Attach to the trainer (``train_handlers``), after the ``ValidationHandler`` so the epoch's
    validation metrics are in ``evaluator.state.metrics``.

    Args:
        filename: PNG file of the curves.
        evaluator: the validation engine whose ``state.metrics`` are plotted (optional).
        loss_transform: extracts the loss from ``engine.state.output``.
    """

    def __init__(
        self, filename: str, evaluator: Engine | None = None, loss_transform: Callable = from_engine("loss", first=True)
    ) -> None:
        self.filename = filename
        self.evaluator = evaluator
        self.loss_transform = loss_transform
        self.history: dict[str, list[float]] = {"train_loss": []}
        self._losses: list[float] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._record_loss)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

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
        save_training_curves(self.history, self.filename)


class OverlayGrid:
    """Save an overlay grid of the first ``num_images`` images of each run of an evaluator.

    Args:
        filename: PNG file of the grid.
        num_images: rows of the grid.
        presence_key: key of the presence probability in each decollated output, if any.
    """

    def __init__(self, filename: str, num_images: int = 6, presence_key: str | None = "presence") -> None:
        self.filename = filename
        self.num_images = num_images
        self.presence_key = presence_key
        self._items: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self._save)

    def _reset(self, _engine: Engine) -> None:
        self._items = []

    def __call__(self, engine: Engine) -> None:
        for item in engine.state.output:
            if len(self._items) < self.num_images:
                self._items.append(item)

    def _save(self, _engine: Engine) -> None:
        if not self._items:
            return
        has_label = all("label" in item for item in self._items)
        has_presence = self.presence_key is not None and all(self.presence_key in item for item in self._items)
        save_overlay_grid(
            [item["image"] for item in self._items],
            [item["label"] for item in self._items] if has_label else None,
            [item["pred"] for item in self._items],
            self.filename,
            presence=[float(item[self.presence_key]) for item in self._items] if has_presence else None,
            titles=[os.path.basename(str(item["image"].meta.get("filename_or_obj", i)))
                    if hasattr(item["image"], "meta") else str(i) for i, item in enumerate(self._items)],
        )
