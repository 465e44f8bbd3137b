"""Ignite handlers that write evaluation reports: a per-image (binary segmentation) or per-case (BraTS volumes)
CSV and a summary JSON at the end of each evaluator run, gathered from all ranks under ``torchrun``.

The metrics themselves are computed by :mod:`monai_seg.metrics`; these handlers record them per item and
write the files.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor, decollate_batch
from monai.data.utils import affine_to_spacing
from monai.handlers import from_engine
from monai.utils import ImageMetaKey, convert_to_tensor, evenly_divisible_all_gather, string_list_all_gather

from monai_seg.handlers.utils import item_case_name
from monai_seg.metrics.brats import VOLUME_METRICS, compute_volume_metrics
from monai_seg.metrics.calibration import CalibrationStats, calibration_target, rescale_probabilities
from monai_seg.metrics.qubrats import QUBRATS_METRICS, compute_qubrats_score
from monai_seg.metrics.segmentation import (
    BinarySegmentationMetrics,
    empty_safe_confusion_matrix_metric,
    write_segmentation_report,
)
from monai_seg.metrics.triage import (
    compute_interval_referral_score,
    compute_retention_curve,
    compute_triage_score,
    write_retention_curve,
)
from monai_seg.metrics.uncertainty import max_uncertainty
from monai_seg.utils import atomic_write_csv, atomic_write_text
from monai_seg.visualize import save_reliability_diagram, save_retention_curve

__all__ = ["ReportHandler", "SegmentationReport", "BraTSReport", "CalibrationReport", "write_retention_report"]


def _image_meta(batch: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Meta data of the ``image`` of each item of a decollated batch (empty for plain tensors)."""
    return [getattr(item["image"], "meta", {}) for item in batch]


def write_retention_report(
    output_dir: str,
    quality: torch.Tensor,
    scores: torch.Tensor,
    cases: Sequence[str],
    quality_name: str = "Dice",
    prefix: str = "",
) -> dict[str, float]:
    """Write the retention curve of an evaluation (:func:`~monai_seg.metrics.compute_retention_curve`): the
    mean quality of the cases kept when the highest scores are referred first, beside the random and the
    oracle referral, as ``{prefix}retention_curve.csv``, ``{prefix}triage_cases.csv`` (the cases in review
    order, the most uncertain first) and ``{prefix}retention_curve.png`` in ``output_dir``.

    Args:
        output_dir: folder of the files.
        quality: one value per case, higher is better (e.g. Dice), shape (N,).
        scores: one referral score per case, higher = refer first, shape (N,).
        cases: the N case names.
        quality_name: the quality, for the figure's axis.
        prefix: prefix of the file names and of the summary keys, for a second curve of the same evaluation.

    Returns:
        ``{prefix}retention_auc``, ``{prefix}retention_random_auc`` and ``{prefix}retention_oracle_auc``,
        the areas under the three curves, for the summary.
    """
    curve = compute_retention_curve(quality, scores)
    write_retention_curve(
        curve,
        os.path.join(output_dir, f"{prefix}retention_curve.csv"),
        os.path.join(output_dir, f"{prefix}triage_cases.csv"),
        case_ids=cases,
    )
    save_retention_curve(curve, os.path.join(output_dir, f"{prefix}retention_curve.png"), quality_name)
    return {f"{prefix}retention_auc": curve.auc, f"{prefix}retention_random_auc": curve.random_auc,
            f"{prefix}retention_oracle_auc": curve.oracle_auc}


class ReportHandler:
    """Base of the report handlers: record at every iteration, write the files when the epoch completes.

    Subclasses implement ``_started`` (reset at epoch start), ``__call__`` (record an iteration) and
    ``_finalize`` (gather the records from all ranks, a collective call, then write if
    :meth:`_is_writer`). Attach the handler on every rank.

    Args:
        output_dir: folder of the report files.
        save_rank: rank that writes the files in multi-GPU evaluation.
        name: logger name, defaults to ``engine.logger``.
    """

    def __init__(self, output_dir: str, save_rank: int = 0, name: str | None = None) -> None:
        self.output_dir = output_dir
        self.save_rank = save_rank
        self.logger = logging.getLogger(name)
        self._name = name

    def attach(self, engine: Engine) -> None:
        """
        Args:
            engine: Ignite Engine, usually an evaluator.
        """
        if self._name is None:
            self.logger = engine.logger
        for event, handler in (
            (Events.EPOCH_STARTED, self._started),
            (Events.ITERATION_COMPLETED, self),
            (Events.EPOCH_COMPLETED, self._finalize),
        ):
            if not engine.has_event_handler(handler, event):
                engine.add_event_handler(event, handler)

    def _is_writer(self) -> bool:
        """Whether this rank writes the files.

        Raises:
            ValueError: when ``save_rank`` is not a rank of the distributed group.
        """
        if self.save_rank >= idist.get_world_size():
            raise ValueError("target save rank is greater than the distributed group size.")
        return idist.get_rank() == self.save_rank


class SegmentationReport(ReportHandler):
    """
    Ignite handler that writes :py:func:`~monai_seg.metrics.write_segmentation_report` files at the end of each run
    of the engine it is attached to (typically a ``SupervisedEvaluator``, via ``val_handlers``).

    On every iteration it records the per-image confusion matrices of the binarised ``pred`` against
    ``label``, the image identifiers (``filename_or_obj`` of the batch meta data, as MONAI's
    ``ClassificationSaver`` reads it; the running image index when absent) and, optionally, the
    presence probabilities (e.g. stored by ``PresenceGatingd(presence_key="presence")``). In
    multi-GPU evaluation the records are gathered and rank ``save_rank`` writes the files.

    **Case triage** (with ``triage_transform``): each image gets a ``triage_score``, the mean of its
    uncertainty map (e.g. ``ProbabilityEntropyd``'s ``pred_entropy``) over the predicted structure dilated by
    ``band`` pixels, mean over the channels (:func:`~monai_seg.metrics.compute_triage_score`, ``"structure"``;
    where nothing is predicted, the mean over the whole image or its mask), and the report adds the
    retention curve of the per-image Dice (mean over the channels; 1 for an empty mask predicted empty, the
    Kaggle convention) against that score (:func:`write_retention_report`: ``retention_curve.csv``,
    ``triage_cases.csv``, ``retention_curve.png``, the areas in the summary).

    **Presence referral** (with ``presence_transform`` and ``presence_std_transform``, e.g. the Monte-Carlo
    dropout std that ``PresenceGatingd(std_key=...)`` stores): a ``presence_std`` column and a second
    retention curve, the ``presence_`` files, of the per-image Dice against
    :func:`~monai_seg.metrics.compute_interval_referral_score` (``std / |presence - presence_threshold|``):
    its points are the Kaggle score of the images kept when those whose presence interval
    ``presence ± k * std`` straddles the threshold are referred, for every k.

    Example::

        SegmentationReport(output_dir, presence_transform=from_engine("presence"))

    Args:
        output_dir: folder of the report files.
        output_transform: extracts ``(y_pred, y)`` from ``engine.state.output``: lists of
            channel-first tensors or batch-first tensors, binarised, shape (C, *spatial) per image.
        batch_transform: extracts per-image meta data dicts (or one batched dict, decollated here)
            from ``engine.state.batch``; the default reads ``item["image"].meta`` of the decollated
            batch, as ``SupervisedEvaluator(decollate=True)`` (its default) leaves it.
        presence_transform: if not None, extracts one presence probability per image from
            ``engine.state.output``.
        presence_threshold: threshold of the presence accuracy and of the presence referral.
        triage_transform: if not None, extracts ``(y_pred, uncertainty)`` or ``(y_pred, uncertainty, mask)``
            from ``engine.state.output``, lists with one tensor per image: the binary prediction (C, *spatial)
            whose structure the score averages over, the map (C or 1, *spatial) and the pixels that count
            (1, *spatial), e.g. a field of view.
        band: width in pixels of the ring around the predicted structure that the triage score includes.
        presence_std_transform: if not None (with ``presence_transform``), extracts one presence std per image.
        per_image_filename: name of the CSV file.
        summary_filename: name of the JSON file.
        save_rank: rank that writes the files in multi-GPU evaluation.
        name: logger name, defaults to ``engine.logger``.

    Raises:
        ValueError: when ``presence_std_transform`` is given without ``presence_transform``.
    """

    def __init__(
        self,
        output_dir: str,
        output_transform: Callable = from_engine(["pred", "label"]),
        batch_transform: Callable = _image_meta,
        presence_transform: Callable | None = None,
        presence_threshold: float = 0.5,
        triage_transform: Callable | None = None,
        band: int = 2,
        presence_std_transform: Callable | None = None,
        per_image_filename: str = "metrics_per_image.csv",
        summary_filename: str = "metrics_summary.json",
        save_rank: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(output_dir, save_rank, name)
        if presence_std_transform is not None and presence_transform is None:
            raise ValueError("SegmentationReport: presence_std_transform needs presence_transform.")
        self.output_transform = output_transform
        self.batch_transform = batch_transform
        self.presence_transform = presence_transform
        self.presence_threshold = presence_threshold
        self.triage_transform = triage_transform
        self.band = band
        self.presence_std_transform = presence_std_transform
        self.per_image_filename = per_image_filename
        self.summary_filename = summary_filename
        self._metric = BinarySegmentationMetrics()
        self._filenames: list[str] = []
        self._values: dict[str, list[float]] = {"presence": [], "presence_std": [], "triage_score": []}

    def _started(self, _engine: Engine) -> None:
        self._metric.reset()
        self._filenames = []
        self._values = {key: [] for key in self._values}

    def _triage_scores(self, output: Any) -> list[float]:
        """The triage score of each image of ``output`` (mean over the channels)."""
        parts = self.triage_transform(output)  # type: ignore[misc]
        masks = parts[2] if len(parts) > 2 else [None] * len(parts[0])
        return [
            compute_triage_score(u[None], pred[None], band=self.band, mask=None if m is None else m[None]).mean().item()
            for pred, u, m in zip(parts[0], parts[1], masks)
        ]

    def __call__(self, engine: Engine) -> None:
        """
        Record the current iteration.

        Args:
            engine: Ignite Engine, usually an evaluator.
        """
        meta_data = self.batch_transform(engine.state.batch)
        if isinstance(meta_data, dict):
            meta_data = decollate_batch(meta_data)
        for m in meta_data:
            self._filenames.append(f"{m.get(ImageMetaKey.FILENAME_OR_OBJ, len(self._filenames))}")
        y_pred, y = self.output_transform(engine.state.output)
        self._metric(y_pred, y)
        for key, transform in (("presence", self.presence_transform), ("presence_std", self.presence_std_transform)):
            if transform is not None:
                self._values[key].extend(float(p) for p in transform(engine.state.output))
        if self.triage_transform is not None:
            self._values["triage_score"].extend(self._triage_scores(engine.state.output))

    def _gathered(self, key: str, ws: int) -> torch.Tensor:
        """The values recorded under ``key`` on all ranks, a collective call."""
        values = torch.tensor(self._values[key], dtype=torch.float64)
        return evenly_divisible_all_gather(values, concat=True) if ws > 1 else values

    def _finalize(self, _engine: Engine) -> None:
        """Gather the records from all ranks and write the report on ``save_rank``."""
        is_writer = self._is_writer()
        ws = idist.get_world_size()
        confusion_matrix = self._metric.get_buffer()
        filenames = string_list_all_gather(self._filenames) if ws > 1 else self._filenames
        presence, presence_std, triage = (
            None if transform is None else self._gathered(key, ws)
            for key, transform in (("presence", self.presence_transform),
                                   ("presence_std", self.presence_std_transform),
                                   ("triage_score", self.triage_transform))
        )
        if not is_writer:
            return
        dice = empty_safe_confusion_matrix_metric("f1 score", confusion_matrix).mean(dim=1)
        columns, summary = {}, {}
        if triage is not None and len(filenames) > 0:
            columns["triage_score"] = triage.tolist()
            summary.update(write_retention_report(self.output_dir, dice, triage, filenames))
        if presence is not None and presence_std is not None and len(filenames) > 0:
            referral = compute_interval_referral_score(presence, presence_std, self.presence_threshold)
            columns.update(presence_std=presence_std.tolist(), presence_referral_score=referral.tolist())
            summary.update(write_retention_report(self.output_dir, dice, referral, filenames, prefix="presence_"))
        summary = write_segmentation_report(
            self.output_dir,
            confusion_matrix,
            filenames,
            None if presence is None else presence.float(),
            self.presence_threshold,
            self.per_image_filename,
            self.summary_filename,
            extra_columns=columns,
            extra_summary=summary,
        )
        self.logger.info(f"segmentation report of {summary['num_images']} images written to {self.output_dir}.")


def _spacing(x: torch.Tensor) -> list[float] | None:
    """Voxel size in mm from a MetaTensor's affine; None for a plain tensor."""
    if not isinstance(x, MetaTensor):
        return None
    return affine_to_spacing(x.affine, r=x.dim() - 1).tolist()


class BraTSReport(ReportHandler):
    """
    Ignite handler that scores each case of an evaluator run
    (:func:`~monai_seg.metrics.compute_volume_metrics`) and, at the end of the run, writes a per-case CSV
    and a summary JSON (both atomically).

    The CSV has one row per case: ``case``, ``<metric>_<region>`` for every metric of
    :data:`~monai_seg.metrics.VOLUME_METRICS` and region, ``qubrats_<metric>_<map>_<region>`` for every
    QU-BraTS value (:data:`~monai_seg.metrics.QUBRATS_METRICS`) of every map of ``qubrats_keys``
    (:func:`~monai_seg.metrics.compute_qubrats_score`, each map scaled to [0, 100] by its largest possible
    value, the brain as mask), and ``triage_score``: the ``uncertainty_key`` map averaged over the
    predicted structures and a ``band``-voxel ring around them, mean over the regions
    (:func:`~monai_seg.metrics.compute_triage_score`). The JSON holds the mean of each column over
    the cases (ignoring NaN), the number of cases, the threshold, the name of the uncertainty map and the
    areas of the retention curve. The retention curve (mean Dice over the regions of the cases kept when
    the most uncertain are referred first, :func:`~monai_seg.metrics.compute_retention_curve`) is written as
    ``retention_curve.csv``, ``triage_cases.csv`` (the cases in review order) and ``retention_curve.png``.
    In multi-GPU evaluation the rows are gathered and rank ``save_rank`` writes the files.

    It reads the decollated ``engine.state.output`` items after ``postprocessing``: all maps must
    be on the label's grid (``Invertd`` them first).

    Args:
        output_dir: folder of the report files.
        regions: names of the label / probability channels, e.g. ``("WT",)`` or ``("TC", "WT", "ET")``.
        prob_key: key of the mean probability (C, *spatial).
        uncertainty_key: key of the uncertainty map (C, *spatial) of the volume metrics and the triage score.
        qubrats_keys: keys of the maps scored by QU-BraTS, ``pred_<map>`` with ``<map>`` one of ``std``,
            ``entropy``, ``mutual_info`` (which sets its largest value).
        label_key: key of the binary ground truth (C, *spatial).
        image_key: key of the input image; its non-zero voxels are the brain, its file names the case.
        threshold: probability threshold of the prediction.
        activation: ``"sigmoid"`` or ``"softmax"``, the activation of the probabilities (bounds the entropies).
        num_bins: probability bins of the calibration error.
        band: width in voxels of the ring around the predicted structures that the triage score includes.
        per_case_filename: name of the CSV file.
        summary_filename: name of the JSON file.
        save_rank: rank that writes the files in multi-GPU evaluation.
        name: logger name, defaults to ``engine.logger``.
    """

    def __init__(
        self,
        output_dir: str,
        regions: Sequence[str] = ("WT",),
        prob_key: str = "pred_prob",
        uncertainty_key: str = "pred_entropy",
        qubrats_keys: Sequence[str] = ("pred_std", "pred_entropy", "pred_mutual_info"),
        label_key: str = "label",
        image_key: str = "image",
        threshold: float = 0.5,
        activation: str = "sigmoid",
        num_bins: int = 10,
        band: int = 2,
        per_case_filename: str = "metrics_per_case.csv",
        summary_filename: str = "metrics_summary.json",
        save_rank: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(output_dir, save_rank, name)
        self.regions = tuple(regions)
        self.prob_key = prob_key
        self.uncertainty_key = uncertainty_key
        self.qubrats_keys = tuple(qubrats_keys)
        self.label_key = label_key
        self.image_key = image_key
        self.threshold = threshold
        self.activation = activation
        self.num_bins = num_bins
        self.band = band
        self.per_case_filename = per_case_filename
        self.summary_filename = summary_filename
        self._cases: list[str] = []
        self._rows: list[torch.Tensor] = []

    @property
    def columns(self) -> list[str]:
        """The metric columns of the CSV: ``<metric>_<region>``, ``qubrats_<metric>_<map>_<region>``, ``triage_score``."""
        qubrats = [
            f"qubrats_{metric}_{key.removeprefix('pred_')}_{region}"
            for key in self.qubrats_keys
            for metric in QUBRATS_METRICS
            for region in self.regions
        ]
        return [f"{metric}_{region}" for metric in VOLUME_METRICS for region in self.regions] + qubrats + ["triage_score"]

    def _qubrats(self, item: Mapping, prediction: torch.Tensor, brain: torch.Tensor) -> list[torch.Tensor]:
        """The QU-BraTS values of every map of ``qubrats_keys`` for one case, in the order of :attr:`columns`.

        Args:
            item: one decollated evaluator output.
            prediction: the case's binary prediction, shape (1, C, *spatial).
            brain: the case's brain mask, shape (1, 1, *spatial).
        """
        label = item[self.label_key][None]
        values = []
        for key in self.qubrats_keys:
            if key not in item:
                raise ValueError(f"BraTSReport: the evaluator output has no map {key!r} (it has {sorted(item)}).")
            largest = max_uncertainty(key.removeprefix("pred_"), self.activation, len(self.regions))
            scores = compute_qubrats_score(prediction, label, item[key][None], (0.0, largest), brain)
            values += [scores[metric][0] for metric in QUBRATS_METRICS]
        return values

    def _started(self, _engine: Engine) -> None:
        self._cases, self._rows = [], []

    def __call__(self, engine: Engine) -> None:
        """
        Score the cases of the current iteration.

        Args:
            engine: Ignite Engine, usually an evaluator.
        """
        for item in engine.state.output:
            label = item[self.label_key]
            if label.shape[0] != len(self.regions):
                raise ValueError(f"label has {label.shape[0]} channels but regions are {self.regions}.")
            brain = (item[self.image_key] != 0).any(0)
            metrics = compute_volume_metrics(
                item[self.prob_key],
                item[self.uncertainty_key],
                label,
                brain,
                spacing=_spacing(label),
                threshold=self.threshold,
                num_bins=self.num_bins,
            )
            prediction, brain = item[self.prob_key][None] > self.threshold, brain[None, None]
            triage = compute_triage_score(item[self.uncertainty_key][None], prediction, band=self.band, mask=brain)
            self._cases.append(item_case_name(item, self.image_key) or str(len(self._cases)))
            qubrats = self._qubrats(item, prediction, brain)
            values = [metrics[name] for name in VOLUME_METRICS] + qubrats + [triage.mean()[None]]
            self._rows.append(torch.cat([value.reshape(-1).float().cpu() for value in values]))

    def _finalize(self, _engine: Engine) -> None:
        """Gather the rows from all ranks and write the report on ``save_rank``."""
        is_writer = self._is_writer()
        rows = torch.stack(self._rows) if self._rows else torch.zeros(0, len(self.columns))
        cases = self._cases
        if idist.get_world_size() > 1:
            rows, cases = evenly_divisible_all_gather(rows, concat=True), string_list_all_gather(cases)
        if not is_writer:
            return
        summary: dict[str, Any] = {
            column: None if torch.isnan(values).all() else values.nanmean().item()
            for column, values in zip(self.columns, rows.T)
        }
        summary.update(num_cases=len(cases), threshold=self.threshold, uncertainty=self.uncertainty_key)
        os.makedirs(self.output_dir, exist_ok=True)
        atomic_write_csv(os.path.join(self.output_dir, self.per_case_filename), ["case", *self.columns],
                         ([case, *values] for case, values in zip(cases, rows.tolist())))
        if len(cases) > 0:
            dice = rows[:, [self.columns.index(f"dice_{region}") for region in self.regions]].nanmean(dim=1)
            summary.update(write_retention_report(self.output_dir, dice.nan_to_num(0.0),
                                                  rows[:, self.columns.index("triage_score")], cases, "mean Dice"))
        atomic_write_text(os.path.join(self.output_dir, self.summary_filename), json.dumps(summary, indent=2) + "\n")
        self.logger.info(f"BraTS report of {len(cases)} cases written to {self.output_dir}: {summary}")


class CalibrationReport(ReportHandler):
    """Calibration before and after temperature scaling, from one evaluator run: ECE and Brier score in the summary
    JSON (key ``calibration``) and a reliability diagram (PNG) with both curves.

    The evaluator runs the calibrated model (:class:`~monai_seg.inferers.CalibratedInferer`) and its postprocessing
    keeps the probabilities before binarising (e.g. ``CopyItemsd(keys="pred", names="prob")``); the uncalibrated
    probabilities are recovered from them with the temperature (:func:`~monai_seg.metrics.rescale_probabilities`):
    exactly for a single-pass model (up to the interpolation of the probabilities back to the label's grid), and
    only approximately for a Monte-Carlo mean, where the temperature acts on each sample. Attach it after the
    handler that writes the summary JSON (``SegmentationReport``, ``BraTSReport``): it adds its key to that file.

    Args:
        output_dir: folder of the report files.
        temperature: the temperatures the evaluator applied (:func:`~monai_seg.inferers.load_temperature`); None
            when it ran uncalibrated (before and after are then equal, and ``calibrated`` is false).
        activation: ``"sigmoid"`` or ``"softmax"``, the model's activation.
        output_transform: extracts ``(probabilities, labels)`` from ``engine.state.output``: lists of channel-first
            tensors, (C, *spatial) and (L, *spatial) per image (see :func:`~monai_seg.metrics.calibration_target`).
        num_bins: equal-width bins of the ECE and the diagram.
        summary_filename: the JSON file to add the ``calibration`` key to (created if missing).
        diagram_filename: the PNG file of the reliability diagram.
        save_rank: rank that writes the files in multi-GPU evaluation.
        name: logger name, defaults to ``engine.logger``.
    """

    def __init__(
        self,
        output_dir: str,
        temperature: Sequence[float] | None,
        activation: str = "sigmoid",
        output_transform: Callable = from_engine(["prob", "label"]),
        num_bins: int = 15,
        summary_filename: str = "metrics_summary.json",
        diagram_filename: str = "reliability.png",
        save_rank: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(output_dir, save_rank, name)
        self.temperature = None if temperature is None else [float(t) for t in temperature]
        self.activation = activation
        self.output_transform = output_transform
        self.summary_filename = summary_filename
        self.diagram_filename = diagram_filename
        self.before, self.after = CalibrationStats(num_bins), CalibrationStats(num_bins)

    def _started(self, engine: Engine) -> None:
        self.before.reset()
        self.after.reset()

    def __call__(self, engine: Engine) -> None:
        probs, labels = self.output_transform(engine.state.output)
        for prob, label in zip(probs, labels):
            prob = convert_to_tensor(prob, track_meta=False).float()[None]
            label = convert_to_tensor(label, track_meta=False)[None]
            target = calibration_target(label, prob.shape[1], self.activation)
            self.after.update(prob, target)
            if self.temperature is not None:
                prob = rescale_probabilities(prob, self.temperature, self.activation)
            self.before.update(prob, target)

    def _finalize(self, engine: Engine) -> None:
        if self.after.counts is None:
            return
        self.before.all_reduce()
        self.after.all_reduce()
        if not self._is_writer():
            return
        os.makedirs(self.output_dir, exist_ok=True)
        summary_file = os.path.join(self.output_dir, self.summary_filename)
        summary = {}
        if os.path.exists(summary_file):
            with open(summary_file) as f:
                summary = json.load(f)
        summary["calibration"] = {
            "calibrated": self.temperature is not None,
            "temperature": self.temperature,
            "num_pixels": int(self.after.counts.sum(1)[0]),
            **{f"{metric}_{when}": float(getattr(stats, metric)().mean())
               for when, stats in (("before", self.before), ("after", self.after)) for metric in ("ece", "brier")},
            **{f"{metric}_{when}_per_channel": getattr(stats, metric)().tolist()
               for when, stats in (("before", self.before), ("after", self.after)) for metric in ("ece", "brier")},
        }
        atomic_write_text(summary_file, json.dumps(summary, indent=2) + "\n")
        save_reliability_diagram({"before": self.before, "after": self.after},
                                 os.path.join(self.output_dir, self.diagram_filename))
        result = summary["calibration"]
        self.logger.info(f"Calibration: ECE {result['ece_before']:.4f} -> {result['ece_after']:.4f}, Brier "
                         f"{result['brier_before']:.4f} -> {result['brier_after']:.4f}; wrote {summary_file}.")
