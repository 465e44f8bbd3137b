"""Calibrated inference: the temperatures of ``models/calibration.json`` applied to a bundle's inferer.

``monai-seg calibrate <bundle>`` fits the temperatures on the validation split (:mod:`monai_seg.metrics.calibration`)
and writes them with :func:`write_calibration`; a bundle's ``inference.json`` and ``evaluate.json`` read them with
:func:`load_temperature` and run their inferer through :class:`CalibratedInferer`::

    "calibration_file": "$@bundle_root + '/models/calibration.json'",
    "temperature": "$monai_seg.inferers.load_temperature(@calibration_file, @checkpoint)",
    "inferer": {"_target_": "monai_seg.inferers.CalibratedInferer", "inner": "@uncalibrated_inferer",
                "temperature": "@temperature"}

The file records the SHA-256 of the model file it was fitted for: after a retraining the old temperatures are
refused with an error instead of being applied silently to another model. Without the file the inferer is
unchanged (a log line says so). Since the temperature is applied inside the inferer, to whatever network it is
given, MONAI Label (which loads ``models/model.pt`` into ``network_def`` and runs the bundle's ``inferer``) serves
the calibrated probabilities too.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from monai.inferers import Inferer

from monai_seg.inferers.mc_dropout import MCDropoutInferer
from monai_seg.networks.inference import EvalOptimized
from monai_seg.networks.wrappers import TemperatureScaled
from monai_seg.utils import atomic_write_text, file_sha256

__all__ = ["CalibratedInferer", "load_temperature", "read_calibration", "write_calibration"]

logger = logging.getLogger(__name__)


def write_calibration(path: str | os.PathLike, record: dict[str, Any], model_file: str | os.PathLike) -> None:
    """Write a calibration ``record`` (``temperature`` and any statistics) to ``path`` atomically, with the
    SHA-256 and name of ``model_file``, the model it was fitted for.

    Raises:
        ValueError: when ``record`` has no positive ``temperature`` list.
    """
    _check_temperature(record.get("temperature"), str(path))
    record = {**record, "model_file": os.path.basename(model_file), "model_sha256": file_sha256(model_file)}
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")


def _check_temperature(temperature: Any, source: str) -> list[float]:
    if not isinstance(temperature, list) or not temperature or not all(
        isinstance(t, (int, float)) and 0 < t < float("inf") for t in temperature
    ):
        raise ValueError(f"{source}: 'temperature' must be a non-empty list of positive numbers, got {temperature!r}.")
    return [float(t) for t in temperature]


def read_calibration(path: str | os.PathLike, model_file: str | os.PathLike) -> dict[str, Any]:
    """The calibration record of ``path``, checked against the model file it is applied to.

    Raises:
        ValueError: naming the file when it is unreadable, has no valid ``temperature``, or was fitted for
            another model (its ``model_sha256`` differs from ``model_file``'s, e.g. after a retraining) or
            ``model_file`` does not exist.
    """
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"Cannot read the calibration file {path}: {error}") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: a calibration file holds a JSON object, got {type(record).__name__}.")
    record["temperature"] = _check_temperature(record.get("temperature"), str(path))
    if not os.path.isfile(model_file):
        raise ValueError(f"{path} calibrates {model_file}, which does not exist.")
    if record.get("model_sha256") != file_sha256(model_file):
        raise ValueError(
            f"{path} was fitted for another model than {model_file} (checksums differ: the model was retrained "
            "or replaced); refit it with `monai-seg calibrate <bundle>` or delete it."
        )
    return record


def load_temperature(path: str | os.PathLike, model_file: str | os.PathLike) -> list[float] | None:
    """The temperatures of the calibration file ``path`` for ``model_file``, or None (with a log line) without one.

    Raises:
        ValueError: as :func:`read_calibration`.
    """
    if not os.path.exists(path):
        logger.info(f"No calibration file {path}: the probabilities are not calibrated (monai-seg calibrate).")
        return None
    temperature = read_calibration(path, model_file)["temperature"]
    logger.info(f"Calibration {path}: temperature {temperature}.")
    return temperature


class CalibratedInferer(Inferer):
    """Run ``inner`` on the network with its logits divided by ``temperature`` (:class:`TemperatureScaled`).

    Wrapping the network, not the output, scales each Monte-Carlo sample of an
    :class:`~monai_seg.inferers.MCDropoutInferer` before its activation, and the logits of each window of a
    ``SlidingWindowInferer``.

    Args:
        inner: the bundle's inferer.
        temperature: 1 or C temperatures (:func:`load_temperature`); None runs ``inner`` unchanged.
    """

    def __init__(self, inner: Inferer, temperature: float | Sequence[float] | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.temperature = temperature
        self._wrapped: TemperatureScaled | None = None

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any) -> Any:
        """
        Args:
            inputs: the input batch, (B, C_in, *spatial).
            network: the model, returning logits (B, C, *spatial).
            args: passed to ``inner``.
            kwargs: passed to ``inner``.
        """
        if self.temperature is None:
            return self.inner(inputs, network, *args, **kwargs)
        if isinstance(network, EvalOptimized) and isinstance(self.inner, MCDropoutInferer):
            network = network.network  # its optimised copy has no dropout: sample the net it wraps
        if self._wrapped is None or self._wrapped.network is not network:  # one wrapper per network, so that
            self._wrapped = TemperatureScaled(network, self.temperature)  # the inner inferer's caches hold
        return self.inner(inputs, self._wrapped, *args, **kwargs)
