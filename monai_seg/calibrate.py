"""Fit a bundle's calibration: ``monai-seg calibrate <bundle>`` writes ``models/calibration.json``.

:func:`calibrate_bundle` runs the trained model (``<ckpt_dir>/model.pt``) on the bundle's validation split, with
the ``validate`` preprocessing and inferer of ``configs/train.json`` (deterministic: dropout off), samples at most
``max_pixels`` pixels spread evenly over the images (inside the field of view ``fov`` of the items that have one,
as the retina bundle's), fits the temperatures
(:func:`~monai_seg.metrics.fit_temperature`: one per channel for sigmoid outputs, including the nerve net's
presence channel, one for softmax outputs) and writes them with their statistics before and after (NLL, ECE,
Brier score on the sampled pixels) and the model's checksum (:func:`~monai_seg.inferers.write_calibration`).
``inference.json`` and ``evaluate.json`` then apply them (:class:`~monai_seg.inferers.CalibratedInferer`).
"""

from __future__ import annotations

import datetime
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.transforms import Activationsd, Compose
from monai.utils import convert_to_tensor

from monai_seg.inferers import write_calibration
from monai_seg.metrics.calibration import (
    CalibrationStats,
    calibration_target,
    fit_temperature,
    negative_log_likelihood,
    sample_pixels,
    separated_channels,
)

__all__ = ["CALIBRATION_FILENAME", "calibrate_bundle", "validation_activation"]

CALIBRATION_FILENAME = "calibration.json"

logger = logging.getLogger(__name__)


def validation_activation(postprocessing: Compose) -> str:
    """``"sigmoid"`` or ``"softmax"``: the activation that the first ``Activationsd`` of ``postprocessing``
    applies to ``pred``.

    Raises:
        ValueError: when no ``Activationsd`` applies a sigmoid or a softmax to ``pred``.
    """
    for t in postprocessing.transforms:
        if isinstance(t, Activationsd) and "pred" in t.keys:
            index = list(t.keys).index("pred")
            if t.softmax[index] or t.sigmoid[index]:
                return "softmax" if t.softmax[index] else "sigmoid"
    raise ValueError("validate#postprocessing has no Activationsd with a sigmoid or softmax of 'pred'.")


def _channel_names(parser: ConfigParser, num_channels: int, activation: str) -> list[str]:
    """Names of the output channels: BraTS ``regions``, else the metadata's label names (and ``presence`` for
    the two-head net's extra channel), else the channel indices."""
    if isinstance(parser.get("regions"), list) and len(parser["regions"]) == num_channels:
        return [str(r) for r in parser["regions"]]
    outputs = parser.get("_meta_#network_data_format#outputs", {})
    labels = [str(v) for v in next(iter(outputs.values()), {}).get("channel_def", {}).values()]
    if activation == "softmax" and len(labels) == num_channels:
        return labels
    if activation == "sigmoid" and len(labels[1:]) in (num_channels, num_channels - 1):
        return (labels[1:] + ["presence"])[:num_channels]
    return [str(i) for i in range(num_channels)]


def _statistics(logits: torch.Tensor, target: torch.Tensor, activation: str, temperature: torch.Tensor | None,
                num_bins: int) -> dict[str, list[float]]:
    """NLL, ECE and Brier score per channel of (N, C) pixels at ``temperature``."""
    scaled = logits if temperature is None else logits / temperature.to(logits)
    prob = torch.sigmoid(scaled) if activation == "sigmoid" else torch.softmax(scaled, dim=1)
    stats = CalibrationStats(num_bins)
    stats.update(prob.T[None], target.T[None])
    return {
        "nll": negative_log_likelihood(logits, target, activation, temperature).tolist(),
        "ece": stats.ece().tolist(),
        "brier": stats.brier().tolist(),
    }


def calibrate_bundle(
    bundle_root: str | os.PathLike,
    config_files: Sequence[str] = (),
    override: Mapping[str, Any] | None = None,
    max_pixels: int = 1_000_000,
    num_bins: int = 15,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit the temperatures of a bundle's trained model on its validation split; write ``<ckpt_dir>/calibration.json``.

    Args:
        bundle_root: the bundle folder.
        config_files: variant configs merged onto ``configs/train.json`` (those the model was trained with).
        override: config ids to set, as on the bundle command line (``dataset_dir``, ``ckpt_dir``, ``device``).
        max_pixels: pixels sampled in all, evenly over the validation images (at random, with ``seed``).
        num_bins: bins of the expected calibration error.
        seed: seed of the pixel sampling.

    Returns:
        the record written: ``temperature``, ``channels``, ``activation``, ``num_pixels``, ``num_images``,
        ``before`` and ``after`` (``nll``, ``ece``, ``brier`` per channel), ``date``, the model file and checksum.

    Raises:
        ValueError: naming the missing model file, or the config that lacks an id this needs.
    """
    root = Path(bundle_root)
    parser = ConfigParser()
    parser.read_config([str(root / "configs" / "train.json"), *map(str, config_files)])
    parser.read_meta(str(root / "configs" / "metadata.json"))
    parser.update({"bundle_root": str(root), **(override or {})})
    model_file = os.path.join(parser.get_parsed_content("ckpt_dir"), "model.pt")
    if not os.path.isfile(model_file):
        raise ValueError(f"No trained model {model_file}: train the bundle first (or pass its ckpt_dir).")
    device = parser.get_parsed_content("device")
    network = parser.get_parsed_content("network_def").to(device)
    network.load_state_dict(torch.load(model_file, map_location=device, weights_only=True))
    network.eval()
    activation = validation_activation(parser.get_parsed_content("validate#postprocessing"))
    inferer = parser.get_parsed_content("validate#inferer")
    loader = parser.get_parsed_content("validate#dataloader")
    per_image = max(1, math.ceil(max_pixels / max(1, len(loader.dataset))))
    generator = torch.Generator().manual_seed(seed)
    logits_parts, target_parts, num_images = [], [], 0
    with torch.no_grad():
        for batch in loader:
            logits = inferer(batch["image"].to(device), network)
            label = convert_to_tensor(batch["label"], track_meta=False)
            target = calibration_target(label, logits.shape[1], activation)
            fov = batch.get("fov")
            fov = None if fov is None else convert_to_tensor(fov, track_meta=False)
            kept = sample_pixels(convert_to_tensor(logits, track_meta=False).cpu(), target, per_image, generator, fov)
            logits_parts.append(kept[0])
            target_parts.append(kept[1])
            num_images += logits.shape[0]
    if not logits_parts:
        raise ValueError(f"The validation split of {root} is empty: nothing to calibrate on.")
    logits, target = torch.cat(logits_parts), torch.cat(target_parts)
    temperature = fit_temperature(logits, target, activation)
    record = {
        "temperature": temperature.tolist(),
        "activation": activation,
        "channels": _channel_names(parser, logits.shape[1], activation),
        "num_images": num_images,
        "num_pixels": logits.shape[0],
        "num_bins": num_bins,
        "seed": seed,
        "separated": separated_channels(logits, target, activation).tolist(),
        "before": _statistics(logits, target, activation, None, num_bins),
        "after": _statistics(logits, target, activation, temperature, num_bins),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    filename = os.path.join(os.path.dirname(model_file), CALIBRATION_FILENAME)
    write_calibration(filename, record, model_file)
    logger.info(f"Wrote {filename}: temperature {record['temperature']}, ECE {record['before']['ece']} -> "
                f"{record['after']['ece']}.")
    separated = [c for c, flag in zip(record["channels"], record["separated"] * len(record["channels"])) if flag]
    if separated:  # softmax: one flag for all classes
        logger.warning(f"{filename}: the model makes no error on the validation pixels of {separated}: no "
                       "temperature can be fitted there, it stays 1.")
    worse = [c for c, b, a in zip(record["channels"], record["before"]["ece"], record["after"]["ece"]) if a > b]
    if worse:  # the fit lowers the NLL; a biased model can still lose calibration error by it
        logger.warning(f"{filename}: the temperature raises the validation ECE of {worse}; check the evaluation's "
                       "reliability.png, and delete the file to serve the uncalibrated probabilities.")
    return {**record, "file": filename}
