"""The five experiments of the seed studies, each a set of bundle runs, a table and a plot.

The studies (A to E), their settings and reported figures: docs/studies.md.

Every experiment function takes an :class:`ExperimentContext` and its own settings, runs (or reuses)
its runs through :class:`~monai_seg.experiments.runner.RunStore`, writes ``results.csv``,
``results.md`` and ``results.png`` into the experiment folder and returns the table rows.

- ``cross_validation`` (study C): k folds by subject on the nerve bundle; per fold and mean / std.
- ``model_comparison`` (study A, table I): five nets on one split, each with and without the
  "presence file" (the two-head net's presence probability blanks another net's masks).
- ``nerve_ablation``: from the study's two-head settings to the bundle's defaults, one change a row,
  each scored with and without presence gating, on the demo data or a differently drawn dataset.
- ``noise`` (study D): Gaussian noise in raw 16-bit units on the training and/or validation images.
- ``training_size`` (study D): validation Dice against the number of training images.
- ``uncertainty`` (study B): Monte-Carlo dropout samples T against uncertainty-error AUROC and ECE,
  dropout everywhere against decoder-only dropout.

Nerve scores (from the evaluator's ``metrics_per_image.csv`` at the original resolution):
``kaggle_score`` is the mean over all images of the per-image Dice (1 for an empty mask predicted
empty, the leaderboard's score); ``dice``, ``jaccard`` and ``sensitivity`` are the means over the
images whose ground truth holds a nerve (on the others they only measure presence detection).
"""

from __future__ import annotations

import csv
import json
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_seg.data import NERVE_IMAGE_SHAPE, ensure_demo, load_datalist
from monai_seg.experiments.runner import Bundle, RunStore, write_table
from monai_seg.visualize import new_figure, save_figure

__all__ = [
    "ExperimentContext",
    "nerve_scores",
    "cross_validation",
    "model_comparison",
    "nerve_ablation",
    "noise",
    "training_size",
    "uncertainty",
    "NERVE_MODELS",
]

NERVE_QUICK = {"epochs": 4, "batch_size": 4, "num_workers": 0, "spatial_size": [48, 32]}
QUICK_CHANNELS = [8, 16, 32, 64, 128]
NERVE_MODELS: dict[str, tuple[list[str], dict[str, Any]]] = {
    "unet": (["unet.json"], {"network_def#features": [8, 16, 32, 64, 128, 8]}),
    "two_head_unet": ([], {"network_def#channels": [16, 16, 32, 64, 128]}),
    "r2unet": (["r2unet.json"], {"network_def#channels": QUICK_CHANNELS}),
    "unetplusplus": (["unetplusplus.json"], {"network_def#network#features": [8, 8, 16, 32, 64, 8]}),
    "attention_unet": (["attention_unet.json"], {"network_def#channels": QUICK_CHANNELS}),
}
"""Model name -> (variant configs merged on ``train.json``, quick-mode overrides of the net's width)."""
_STUDY_TWO_HEAD = {
    "network_def#channels": [32, 64, 128, 256, 512], "network_def#dropout_location": "all",
    "network_def#presence_features": 1, "network_def#presence_pool": "avg", "network_def#presence_grid": [7, 5],
    "network_def#prior": None, "network_def#norm": "batch", "resize_mode": "bilinear",
    "lr_scheduler": {"_target_": "torch.optim.lr_scheduler.ConstantLR", "optimizer": "@optimizer", "factor": 1.0,
                     "total_iters": 0},
}
"""``train.json`` overrides that give the study's two-head settings (``configs/study.json`` but the batch size)."""
_ABLATION_STEPS = (
    ("study", ()),
    ("+ dropout before the heads", ("network_def#dropout_location",)),
    ("+ position-free presence head", ("network_def#presence_features", "network_def#presence_pool",
                                       "network_def#presence_grid")),
    ("+ 16-256 channels", ("network_def#channels",)),
    ("+ cosine learning rate", ("lr_scheduler",)),
    ("+ prior initialisation", ("network_def#prior",)),
    ("+ area downsampling", ("resize_mode",)),
    ("+ instance normalisation (defaults)", ("network_def#norm",)),
)


def _ablation_rows() -> dict[str, dict[str, Any]]:
    """Row -> overrides: the study's settings less every change made up to that row."""
    rows, changed = {}, set()
    for row, keys in _ABLATION_STEPS:
        changed.update(keys)
        rows[row] = {k: v for k, v in _STUDY_TWO_HEAD.items() if k not in changed}
    return rows


NERVE_ABLATION = _ablation_rows()
"""Ablation row -> overrides of ``train.json``: each row adds one change to the row above, from the study's
two-head settings to the bundle's defaults (the last row, no override)."""
NERVE_ABLATION_DATA = {"speckle": {"num_subjects": 10, "images_per_subject": 12},
                       "fascicles": {"num_subjects": 30, "images_per_subject": 8}}
"""Dataset style of the nerve demo (:func:`monai_seg.data.make_demo`) -> its size in the ablation (the bundle's demo;
the issue's held-out shape: 30 subjects of 8 images)."""
XRAY_QUICK = {"epochs": 4, "learning_rate": 0.001, "batch_size": 2, "num_workers": 0, "spatial_size": [32, 32],
              "network_def#features": [4, 4, 8, 16, 32, 4]}
BRATS_NET = {"network_def#channels": [8, 16, 32], "network_def#blocks": [1, 1, 1]}
BRATS_QUICK = {"epochs": 8, "batch_size": 16, "num_workers": 0, "spatial_size": [32, 32], **BRATS_NET}
NOISE_CONDITIONS = {"none": (False, False), "both": (True, True), "train": (True, False), "val": (False, True)}
"""Condition -> (noise on the training images, noise on the validation images)."""
DROPOUT_LOCATIONS = {"everywhere": "all", "decoder": "decoder"}
"""Table name -> ``dropout_location`` of the monai_seg nets."""


@dataclass
class ExperimentContext:
    """What every experiment needs.

    Args:
        bundle: the bundle the runs drive.
        output_dir: the experiment folder (runs, table, plot).
        dataset_dir: the user's data; None: the bundle's demo data, or in quick mode a tiny demo
            dataset written into ``output_dir/demo_data``.
        quick: tiny demo data, nets and epochs (CI): seconds per run.
        overrides: config overrides applied to every training and evaluation run (after the
            quick-mode ones), e.g. ``{"epochs": 10}``.
        echo: prints one progress line per run.
    """

    bundle: Bundle
    output_dir: Path
    dataset_dir: str | None = None
    quick: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    echo: Callable[[str], None] = print

    def store(self, total: int) -> RunStore:
        """The run store of this experiment, for ``total`` runs; a run stored with other bundle configs
        than the current ones is refused (see :meth:`Bundle.digest`)."""
        return RunStore(self.output_dir, total, self.echo, {"bundle_configs": self.bundle.digest()})

    def data(self, **quick_demo: Any) -> dict[str, Any]:
        """``{"dataset_dir": ...}`` for the runs: the user's folder, the quick demo of the bundle's layout
        (:func:`monai_seg.data.ensure_demo` with the arguments ``quick_demo``, written once) or none."""
        if self.dataset_dir is not None:
            return {"dataset_dir": self.dataset_dir}
        if self.quick:
            return {"dataset_dir": ensure_demo(self.bundle.layout, self.output_dir / "demo_data", **quick_demo)}
        return {}

    def settings(self, quick: Mapping[str, Any], **run_specific: Any) -> dict[str, Any]:
        """Overrides of one run: quick-mode presets, the run's own values, then the user's overrides."""
        return {**(quick if self.quick else {}), **run_specific, **self.overrides}


def _num_parameters(workflow: Any) -> int:
    return sum(p.numel() for p in workflow.parser.get_parsed_content("network").parameters())


def _read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------------------------
# nerve: cross-validation and model comparison
# ----------------------------------------------------------------------------------------------


def nerve_scores(
    per_image: Sequence[Mapping[str, str]], gate: Mapping[str, float] | None = None, threshold: float = 0.5
) -> dict[str, float]:
    """Nerve scores of an evaluation (see the module docstring), optionally with a presence file.

    Args:
        per_image: rows of ``metrics_per_image.csv`` (``filename``, ``dice``, ``iou``,
            ``sensitivity``, ``gt_presence``).
        gate: filename -> presence probability; a mask whose probability is below ``threshold`` is
            blanked, which scores 1 on an image without nerve and 0 on an image with one.
        threshold: presence threshold.

    Returns:
        ``sensitivity``, ``jaccard``, ``dice`` (images with a nerve; NaN when there are none) and
        ``kaggle_score`` (all images).

    Raises:
        ValueError: when ``gate`` lacks an image of ``per_image``.
    """
    rows = []
    for row in per_image:
        values = {"dice": float(row["dice"]), "jaccard": float(row["iou"]), "sensitivity": float(row["sensitivity"])}
        present = row["gt_presence"] == "1"
        if gate is not None:
            if row["filename"] not in gate:
                raise ValueError(f"the presence file has no probability for {row['filename']}.")
            if gate[row["filename"]] < threshold:
                values = dict.fromkeys(values, 0.0 if present else 1.0)
        rows.append((present, values))
    nerve = [v for present, v in rows if present]
    scores = {k: statistics.fmean(v[k] for v in nerve) if nerve else float("nan")
              for k in ("sensitivity", "jaccard", "dice")}
    scores["kaggle_score"] = statistics.fmean(v["dice"] for _, v in rows)
    return scores


def _nerve_run(ctx: ExperimentContext, variants: Sequence[str], data: Mapping[str, Any],
               settings: Mapping[str, Any], evaluate: Mapping[str, Any] | None = None) -> Callable[[Path], dict]:
    """A run that trains ``train.json`` + ``variants`` and scores its best checkpoint with ``evaluate.json``."""

    def run(folder: Path) -> dict[str, Any]:
        common = {**data, **settings, "ckpt_dir": str(folder / "models"), "overwrite": True}
        workflow = ctx.bundle.run(["train.json", *variants], output_dir=str(folder / "train"), resume=True, **common)
        ctx.bundle.run(["train.json", *variants, "evaluate.json"], output_dir=str(folder / "eval"),
                       **common, **(evaluate or {}))
        scores = nerve_scores(_read_csv(folder / "eval" / "metrics_per_image.csv"))
        return {"params": _num_parameters(workflow), **scores}

    return run


def _nerve_demo(num_subjects: int) -> dict[str, Any]:
    return {"num_subjects": num_subjects, "images_per_subject": 4, "num_test": 0, "size": (105, 145)}


def cross_validation(ctx: ExperimentContext, num_folds: int = 5, model: str = "unet") -> list[dict[str, Any]]:
    """k-fold cross-validation by subject (study C): one row per fold, then the mean and std over folds.

    Args:
        ctx: the experiment context (nerve bundle).
        num_folds: folds of subjects (``train.json`` ``fold`` / ``num_folds``).
        model: a key of :data:`NERVE_MODELS` (study C: ``"unet"``).
    """
    if model not in NERVE_MODELS:
        raise ValueError(f"unknown model {model!r}, expected one of {list(NERVE_MODELS)}.")
    variants, quick = NERVE_MODELS[model]
    data = ctx.data(**_nerve_demo(num_folds))
    store = ctx.store(num_folds)
    rows = []
    for fold in range(num_folds):
        settings = ctx.settings({**NERVE_QUICK, **quick}, fold=fold, num_folds=num_folds)
        result = store.run(f"fold{fold}", _nerve_run(ctx, variants, data, settings), {**data, **settings})
        rows.append({"fold": str(fold), "kaggle_score": result["kaggle_score"], "dice": result["dice"],
                     "iou": result["jaccard"]})
    for name, reduce in (("mean", statistics.fmean), ("std", statistics.pstdev)):
        rows.append({"fold": name, **{k: reduce(r[k] for r in rows[:num_folds]) for k in ("kaggle_score", "dice", "iou")}})
    write_table(rows, ctx.output_dir)
    fig, ax = new_figure(figsize=(6, 3.5))
    metrics = ("kaggle_score", "dice", "iou")
    for i, metric in enumerate(metrics):
        values = [r[metric] for r in rows[:num_folds]]
        ax.bar([f + i * 0.25 for f in range(num_folds)], values, width=0.25, label=metric)
        ax.axhline(rows[num_folds][metric], color=f"C{i}", linestyle="--", linewidth=1)
    ax.set_xticks([f + 0.25 for f in range(num_folds)], [f"fold {f}" for f in range(num_folds)])
    ax.set_ylim(0, 1)
    ax.set_title(f"{num_folds}-fold cross-validation by subject ({model}); dashed: mean")
    ax.legend(fontsize=8)
    save_figure(fig, str(ctx.output_dir / "results.png"))
    return rows


def model_comparison(ctx: ExperimentContext, models: Sequence[str] = tuple(NERVE_MODELS)) -> list[dict[str, Any]]:
    """Model comparison on one subject split (study A, table I), without and with the presence file.

    The two-head net is evaluated without its own gating (``presence_threshold`` 0); its presence
    probabilities then gate every net's masks ("presence file"), its own included, which is the
    bundle's default gating.

    Args:
        ctx: the experiment context (nerve bundle).
        models: keys of :data:`NERVE_MODELS`; ``"two_head_unet"`` is always run (it gives the presence file).
    """
    unknown = set(models) - set(NERVE_MODELS)
    if unknown:
        raise ValueError(f"unknown models {sorted(unknown)}, expected some of {list(NERVE_MODELS)}.")
    models = ["two_head_unet", *[m for m in models if m != "two_head_unet"]]
    data = ctx.data(**_nerve_demo(3))
    store = ctx.store(len(models))
    results = {}
    for model in models:
        variants, quick = NERVE_MODELS[model]
        settings = ctx.settings({**NERVE_QUICK, **quick})
        results[model] = store.run(model, _nerve_run(ctx, variants, data, settings, {"presence_threshold": 0.0}),
                                   {**data, **settings, "variants": variants})
    presence = {r["filename"]: float(r["presence_prob"])
                for r in _read_csv(ctx.output_dir / "two_head_unet" / "eval" / "metrics_per_image.csv")}
    rows = []
    for model in models:
        per_image = _read_csv(ctx.output_dir / model / "eval" / "metrics_per_image.csv")
        for gating, gate in (("none", None), ("presence file", presence)):
            rows.append({"model": model, "gating": gating, "params": results[model]["params"],
                         **nerve_scores(per_image, gate)})
    write_table(rows, ctx.output_dir)
    fig, ax = new_figure(figsize=(7, 3.5))
    for i, gating in enumerate(("none", "presence file")):
        values = [r["kaggle_score"] for r in rows if r["gating"] == gating]
        ax.bar([m + i * 0.4 for m in range(len(models))], values, width=0.4, label=f"gating: {gating}")
    ax.set_xticks([m + 0.2 for m in range(len(models))], models, fontsize=8)
    ax.set_ylim(0, 1.15)  # room for the legend above the bars, which reach 1
    ax.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel("Kaggle score")
    ax.set_title("nerve segmentation: nets without and with the presence file")
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    save_figure(fig, str(ctx.output_dir / "results.png"))
    return rows


def nerve_ablation(ctx: ExperimentContext, style: str = "speckle", rows: Sequence[str] = tuple(NERVE_ABLATION)
                   ) -> list[dict[str, Any]]:
    """What each change from the study's two-head settings to the bundle's defaults does (see :data:`NERVE_ABLATION`).

    Every row trains the two-head net with the same protocol (the bundle's, or ``ctx.overrides`` such as
    ``{"epochs": 30, "batch_size": 16}``) and scores its best checkpoint at the original resolution
    without gating and with its own presence gating (threshold 0.5).

    Args:
        ctx: the experiment context (nerve bundle); without ``ctx.dataset_dir`` the data are drawn in the
            ``style`` of :data:`monai_seg.data.NERVE_DEMO_STYLES` into ``<output_dir>/data_<style>``.
        style: ``"speckle"`` (the demo's generator) or ``"fascicles"`` (another texture, nerve look,
            size and position), ignored with ``ctx.dataset_dir``.
        rows: keys of :data:`NERVE_ABLATION`.
    """
    unknown = (set(rows) - set(NERVE_ABLATION)) | ({style} - set(NERVE_ABLATION_DATA))
    if unknown:
        raise ValueError(f"unknown rows or style {sorted(unknown)}: rows are {list(NERVE_ABLATION)}, styles "
                         f"{list(NERVE_ABLATION_DATA)}.")
    if ctx.dataset_dir is not None:
        data = {"dataset_dir": ctx.dataset_dir}
    else:
        size = (105, 145) if ctx.quick else NERVE_IMAGE_SHAPE
        counts = {"num_subjects": 3, "images_per_subject": 4} if ctx.quick else NERVE_ABLATION_DATA[style]
        data = {"dataset_dir": ensure_demo(ctx.bundle.layout, ctx.output_dir / f"data_{style}", num_test=0, size=size,
                                           style=style, seed=1, **counts)}
    store = ctx.store(len(rows))
    table = []
    for row in rows:
        settings = ctx.settings({**NERVE_QUICK, **NERVE_MODELS["two_head_unet"][1]}, **NERVE_ABLATION[row])
        run = _nerve_run(ctx, [], data, settings, {"presence_threshold": 0.0})
        result = store.run(row.strip("+ ").split(" (")[0].replace(" ", "_"), _with_presence(run), {**data, **settings})
        table.append({"change": row, **result})
    write_table(table, ctx.output_dir)
    fig, ax = new_figure(figsize=(7, 3.5))
    for i, key in enumerate(("kaggle_score_gated", "dice_gated", "presence_auroc")):
        ax.bar([r + i * 0.27 for r in range(len(rows))], [t[key] for t in table], width=0.27, label=key)
    ax.set_xticks([r + 0.27 for r in range(len(rows))], [r.strip("+ ") for r in rows], fontsize=7, rotation=15)
    ax.set_ylim(0, 1)
    ax.set_title(f"two-head net: from the study's settings to the defaults ({style if ctx.dataset_dir is None else 'your data'})")
    ax.legend(fontsize=8)
    save_figure(fig, str(ctx.output_dir / "results.png"))
    return table


def _with_presence(run: Callable[[Path], dict]) -> Callable[[Path], dict]:
    """``run`` (an ungated evaluation) plus the scores gated by the net's own presence probability and its AUROC."""

    def scored(folder: Path) -> dict[str, Any]:
        result = run(folder)
        per_image = _read_csv(folder / "eval" / "metrics_per_image.csv")
        gate = {r["filename"]: float(r["presence_prob"]) for r in per_image}
        gated = nerve_scores(per_image, gate)
        summary = json.loads((folder / "eval" / "metrics_summary.json").read_text())
        return {"kaggle_score": result["kaggle_score"], "dice": result["dice"], "kaggle_score_gated": gated["kaggle_score"],
                "dice_gated": gated["dice"], "presence_auroc": summary["presence_auroc"], "params": result["params"]}

    return scored


# ----------------------------------------------------------------------------------------------
# X-ray: noise and training-set size
# ----------------------------------------------------------------------------------------------


def _xray_demo(num_train: int) -> dict[str, Any]:
    return {"num_train": num_train, "num_val": 2, "num_test": 0, "size": (40, 32)}


def _xray_run(ctx: ExperimentContext, data: Mapping[str, Any], settings: Mapping[str, Any],
              evaluate: Mapping[str, Any]) -> Callable[[Path], dict]:
    """A run that trains the X-ray bundle and scores its best checkpoint on ``val/`` with ``evaluate.json``."""

    def run(folder: Path) -> dict[str, Any]:
        common = {**data, **settings, "ckpt_dir": str(folder / "models"), "overwrite": True}
        ctx.bundle.run(["train.json"], output_dir=str(folder / "train"), resume=True, **common)
        ctx.bundle.run(["train.json", "evaluate.json"], output_dir=str(folder / "eval"), **common, **evaluate)
        with open(folder / "eval" / "metrics.csv") as f:  # MONAI's MetricsSaver: "val_mean_dice<delimiter><value>"
            dice = float(f.readline().replace("\t", ",").split(",")[1])
        classes = _read_csv(folder / "eval" / "val_class_dice_summary.csv")
        return {"val_dice": dice, **{f"dice_{r['class']}": float(r["mean"]) for r in classes if r["class"] != "mean"}}

    return run


def noise(ctx: ExperimentContext, std: float = 5000.0, conditions: Sequence[str] = tuple(NOISE_CONDITIONS)
          ) -> list[dict[str, Any]]:
    """Gaussian noise robustness (study D): one run per condition, noise in raw image units.

    The noise is added before the intensity window (``intensity_range``), so ``std`` is in the
    images' own units: 16-bit values for 16-bit radiographs (the poster: 5000). Training-time
    validation and the final evaluation of the best checkpoint (at each image's own size) both see
    the validation noise. Columns: ``val_dice``, the evaluation's mean Dice of the foreground
    classes (MONAI ``MeanDice(include_background=False)``), and ``dice_class<i>``, each class's
    mean Dice over the validation images (background included).

    Args:
        ctx: the experiment context (X-ray bundle).
        std: standard deviation of the noise.
        conditions: keys of :data:`NOISE_CONDITIONS`: ``none``, ``both``, ``train`` (train only), ``val``.
    """
    unknown = set(conditions) - set(NOISE_CONDITIONS)
    if unknown:
        raise ValueError(f"unknown noise conditions {sorted(unknown)}, expected some of {list(NOISE_CONDITIONS)}.")
    data = ctx.data(**_xray_demo(4))
    store = ctx.store(len(conditions))
    rows = []
    for condition in conditions:
        on_train, on_val = NOISE_CONDITIONS[condition]
        train_std, val_std = std * on_train, std * on_val
        settings = ctx.settings(XRAY_QUICK, train_noise_std=train_std, val_noise_std=val_std)
        result = store.run(f"{condition}_std{std:g}", _xray_run(ctx, data, settings, {"noise_std": val_std}),
                           {**data, **settings})
        rows.append({"condition": condition, "train_noise_std": train_std, "val_noise_std": val_std, **result})
    write_table(rows, ctx.output_dir)
    fig, ax = new_figure(figsize=(5, 3.5))
    ax.bar([r["condition"] for r in rows], [r["val_dice"] for r in rows], color="C0")
    ax.set_ylim(0, 1)
    ax.set_xlabel("noise on")
    ax.set_ylabel("validation Dice (foreground classes)")
    ax.set_title(f"Gaussian noise, std {std:g} (raw image units)")
    save_figure(fig, str(ctx.output_dir / "results.png"))
    return rows


def training_size(ctx: ExperimentContext, sizes: Sequence[int] = (5, 10, 15, 20, 25, 45, 65, 85, 105)
                  ) -> list[dict[str, Any]]:
    """Validation Dice against the number of training images (study D).

    Each size trains on a random subset of ``train/`` (``num_train_images``; the subsets are
    nested: the same seed draws the smaller ones first) and is scored on all of ``val/``.

    Args:
        ctx: the experiment context (X-ray bundle).
        sizes: numbers of training images.

    Raises:
        ValueError: when a size exceeds the training images of the dataset (naming the folder).
    """
    data = ctx.data(**_xray_demo(max(sizes)))
    dataset_dir = data.get("dataset_dir") or ensure_demo(ctx.bundle.layout, ctx.bundle.root / "demo_data")  # default
    available = len(load_datalist(ctx.bundle.layout, dataset_dir, "train", validate=False))
    too_many = [s for s in sizes if not 0 < s <= available]
    if too_many:
        raise ValueError(f"training sizes {too_many} are not in 1..{available}, the images of "
                         f"{os.path.join(dataset_dir, 'train')}.")
    store = ctx.store(len(sizes))
    rows = []
    for size in sizes:
        settings = ctx.settings(XRAY_QUICK, num_train_images=size)
        rows.append({"num_train_images": size, **store.run(f"n{size}", _xray_run(ctx, data, settings, {}), {**data, **settings})})
    write_table(rows, ctx.output_dir)
    fig, ax = new_figure(figsize=(5, 3.5))
    ax.plot([r["num_train_images"] for r in rows], [r["val_dice"] for r in rows], marker="o")
    ax.set_xticks(list(sizes))
    ax.set_ylim(0, 1)
    ax.set_xlabel("training images")
    ax.set_ylabel("validation Dice (foreground classes)")
    ax.grid(alpha=0.3)
    ax.set_title("training-set size sweep")
    save_figure(fig, str(ctx.output_dir / "results.png"))
    return rows


# ----------------------------------------------------------------------------------------------
# BraTS: Monte-Carlo dropout uncertainty
# ----------------------------------------------------------------------------------------------


def uncertainty(ctx: ExperimentContext, samples: Sequence[int] = (1, 5, 10, 20, 50),
                locations: Sequence[str] = tuple(DROPOUT_LOCATIONS)) -> list[dict[str, Any]]:
    """MC-dropout samples T against uncertainty quality, dropout everywhere against decoder-only.

    One training per dropout location (``network_def#dropout_location``), then one evaluation
    (``train.json`` + ``evaluate.json``, the held-out test cases) per T. The columns are the
    report's whole-tumour means over cases: ``dice``, ``uncertainty_auroc`` (the uncertainty map,
    predictive entropy by default, as a detector of the voxel errors inside the brain) and ``ece``.

    Args:
        ctx: the experiment context (BraTS bundle).
        samples: numbers of Monte-Carlo samples T (T = 1: one stochastic pass, its entropy as the map).
        locations: keys of :data:`DROPOUT_LOCATIONS`.
    """
    unknown = set(locations) - set(DROPOUT_LOCATIONS)
    if unknown:
        raise ValueError(f"unknown dropout locations {sorted(unknown)}, expected some of {list(DROPOUT_LOCATIONS)}.")
    data = ctx.data(num_cases=6, shape=(48, 48, 24))
    store = ctx.store(len(locations) * (1 + len(samples)))
    rows = []
    for location in locations:
        net = {"network_def#dropout_location": DROPOUT_LOCATIONS[location]}
        settings = ctx.settings(BRATS_QUICK, **net)
        train_dir = ctx.output_dir / f"{location}_train"

        def train(folder: Path, settings: Mapping[str, Any] = settings) -> dict[str, Any]:
            workflow = ctx.bundle.run(["train.json"], ckpt_dir=str(folder / "models"), output_dir=str(folder / "train"),
                                      resume=True, overwrite=True, **data, **settings)
            return {"params": _num_parameters(workflow)}

        store.run(train_dir.name, train, {**data, **settings})
        for t in samples:
            infer = ctx.settings(BRATS_QUICK, **net, num_samples=t, sample_batch=min(t, 5))

            def evaluate(folder: Path, infer: Mapping[str, Any] = infer) -> dict[str, Any]:
                ctx.bundle.run(["train.json", "evaluate.json"], ckpt_dir=str(train_dir / "models"),
                               output_dir=str(folder), overwrite=True, **data, **infer)
                summary = json.loads((folder / "metrics_summary.json").read_text())
                values = {k: summary[f"{k}_WT"] for k in ("dice", "uncertainty_auroc", "ece")}
                return {k: float("nan") if v is None else v for k, v in values.items()}  # None: undefined

            rows.append({"dropout": location, "samples": t, **store.run(f"{location}_T{t}", evaluate, {**data, **infer})})
    write_table(rows, ctx.output_dir)
    fig, axes = new_figure(1, 2, figsize=(9, 3.5))
    for ax, metric in zip(axes, ("uncertainty_auroc", "ece")):
        for location in locations:
            points = [(r["samples"], r[metric]) for r in rows if r["dropout"] == location]
            ax.plot(*zip(*points), marker="o", label=f"dropout {location}")
        ax.set_xscale("log")
        ax.set_xticks(list(samples), [str(t) for t in samples])
        ax.minorticks_off()
        ax.set_xlabel("Monte-Carlo samples T")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, str(ctx.output_dir / "results.png"))
    return rows
