"""Ignite handlers that draw figures during a run: the training curves and the overlay grid (redrawn at most
every so often, and at the end) and the uncertainty figure of each case of an evaluator run. The drawing
itself is done by the functions of :mod:`monai_seg.visualize`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
from monai.handlers import from_engine
from monai.utils import min_version, optional_import

from monai_seg.handlers.utils import item_case_name
from monai_seg.visualize import save_overlay_grid, save_training_curves, save_uncertainty_figure

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["OverlayGrid", "RedrawThrottle", "TrainingCurves", "UncertaintyFigures"]


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


class UncertaintyFigures:
    """Ignite handler that saves :func:`~monai_seg.visualize.save_uncertainty_figure` as
    ``<output_dir>/<case>_uncertainty.png`` for every case of an evaluator run (inference or evaluation).

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
