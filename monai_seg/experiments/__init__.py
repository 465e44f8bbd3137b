"""The seed studies' experiments as one command each: ``python -m monai_seg.experiments <name> [--quick]``.

Each experiment drives a bundle in-process through MONAI's bundle API with config overrides (the
bundle's configs are read, never copied), keeps one folder per run (a finished run, one with a
``result.json``, is not repeated) and writes ``results.csv``, ``results.md`` and ``results.png``.
See ``docs/experiments.md``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .runner import BUNDLES_DIR, Bundle, RunStore, write_table
from .studies import (
    NERVE_ABLATION,
    NERVE_MODELS,
    ExperimentContext,
    cross_validation,
    model_comparison,
    nerve_ablation,
    nerve_scores,
    noise,
    training_size,
    uncertainty,
)

__all__ = [
    "Experiment",
    "EXPERIMENTS",
    "run_experiment",
    "Bundle",
    "RunStore",
    "ExperimentContext",
    "write_table",
    "nerve_scores",
    "NERVE_MODELS",
]


@dataclass(frozen=True)
class Experiment:
    """An experiment of the registry.

    Args:
        bundle: folder name of its default bundle in ``bundles/``.
        fn: ``fn(ctx, **settings) -> rows``, see :mod:`monai_seg.experiments.studies`.
        quick: settings of the ``--quick`` mode (a few folds, sizes or samples).
        summary: one line for ``--help``.
    """

    bundle: str
    fn: Callable[..., list[dict[str, Any]]]
    quick: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""

    @property
    def settings(self) -> list[str]:
        """Names of the experiment's own settings (``num_folds``, ``sizes``, ...)."""
        return list(inspect.signature(self.fn).parameters)[1:]


EXPERIMENTS: dict[str, Experiment] = {
    "cross_validation": Experiment("nerve_ultrasound_segmentation", cross_validation, {"num_folds": 3},
                                   "study C: k folds by subject, mean and std of Kaggle score, Dice, IoU"),
    "model_comparison": Experiment("nerve_ultrasound_segmentation", model_comparison, {},
                                   "study A table I: five nets, without and with the presence file"),
    "nerve_ablation": Experiment("nerve_ultrasound_segmentation", nerve_ablation,
                                 {"rows": [list(NERVE_ABLATION)[0], list(NERVE_ABLATION)[-1]]},  # study, defaults
                                 "the two-head net from the study's settings to the defaults, one change a row"),
    "noise": Experiment("xray_multiclass_segmentation", noise, {},
                        "study D: Gaussian noise on train and/or validation images (raw 16-bit units)"),
    "training_size": Experiment("xray_multiclass_segmentation", training_size, {"sizes": [2, 4]},
                                "study D: validation Dice against the number of training images"),
    "uncertainty": Experiment("brats_mri_uncertainty", uncertainty, {"samples": [1, 4, 8]},
                              "study B: MC-dropout T against uncertainty AUROC and ECE, dropout placement"),
}


def run_experiment(
    name: str,
    output_dir: str | os.PathLike | None = None,
    bundle: str | os.PathLike | None = None,
    dataset_dir: str | None = None,
    quick: bool = False,
    overrides: Mapping[str, Any] | None = None,
    verbose: bool = False,
    echo: Callable[[str], None] = print,
    **settings: Any,
) -> list[dict[str, Any]]:
    """Run (or complete) one experiment and write its table and plot.

    Args:
        name: a key of :data:`EXPERIMENTS`.
        output_dir: the experiment folder; default ``experiments/<name>`` (``experiments/quick/<name>``
            in quick mode).
        bundle: the bundle folder; default the repository's ``bundles/<bundle>``.
        dataset_dir: the data (the bundle's layout); None: demo data.
        quick: tiny demo data, nets, epochs and settings (CI).
        overrides: config overrides applied to every run (``{"epochs": 10}``).
        verbose: the bundles' own logging (per-epoch metrics) on the console.
        echo: prints one progress line per run.
        settings: the experiment's own settings (see :attr:`Experiment.settings`); they replace the
            quick-mode ones.

    Returns:
        the table rows.

    Raises:
        ValueError: for an unknown experiment or setting.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}, expected one of {list(EXPERIMENTS)}.")
    experiment = EXPERIMENTS[name]
    unknown = set(settings) - set(experiment.settings)
    if unknown:
        raise ValueError(f"experiment {name!r} has no settings {sorted(unknown)}; its settings: {experiment.settings}.")
    if output_dir is None:
        output_dir = Path("experiments", "quick", name) if quick else Path("experiments", name)
    ctx = ExperimentContext(
        bundle=Bundle(bundle if bundle is not None else BUNDLES_DIR / experiment.bundle, verbose),
        output_dir=Path(output_dir),
        dataset_dir=dataset_dir,
        quick=quick,
        overrides=dict(overrides or {}),
        echo=echo,
    )
    return experiment.fn(ctx, **{**(experiment.quick if quick else {}), **settings})
