"""The ``monai-seg`` command line, for what is not a bundle run (bundles run with ``python -m monai.bundle``)::

    monai-seg bundles                          # the bundles: task, net, data layout
    monai-seg demo BUNDLE OUT_DIR              # write the bundle's demo dataset into OUT_DIR
    monai-seg calibrate BUNDLE                 # fit temperature scaling: models/calibration.json
    monai-seg figures OUTPUT_DIR               # overlay grid / uncertainty figures of an inference output
    monai-seg score SUBMISSION ANSWER_KEY      # Kaggle score of a nerve submission against the true masks

The bundles are folders of a clone of the repository (``bundles/``), not part of the installed package:
by default the ``bundles/`` beside the package (an editable install) or else in the current folder;
``--bundles_dir`` points anywhere else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monai.transforms import LoadImage
from monai.utils import optional_import

import monai_seg.data
from monai_seg.calibrate import calibrate_bundle
from monai_seg.inferers import MAP_NAMES
from monai_seg.metrics import score_submission
from monai_seg.utils import read_json
from monai_seg.visualize import save_overlay_grid, save_uncertainty_figure

tqdm, _ = optional_import("tqdm", name="tqdm")

__all__ = ["UNCERTAINTY_MAPS", "BundleInfo", "bundle_info", "default_bundles_dir", "find_bundle", "list_bundles", "main",
           "render_figures", "write_demo"]

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp")
UNCERTAINTY_MAPS: tuple[str, ...] = tuple(name for name in MAP_NAMES if name != "mean")
"""The uncertainty maps of :class:`~monai_seg.inferers.MCDropoutInferer` and
:class:`~monai_seg.inferers.TTAMCDropoutInferer`, also the output postfixes of the BraTS bundle
(``<case>_<map>.nii.gz``; ``expected_entropy`` and ``tta_std`` with its ``tta.json``)."""


@dataclass(frozen=True)
class BundleInfo:
    """What ``monai-seg bundles`` lists about a bundle.

    Args:
        name: folder name of the bundle.
        root: the bundle folder.
        task: ``task`` of ``configs/metadata.json``.
        net: class name of ``network_def`` in ``configs/train.json``.
        layout: the data layout, the ``layout`` id of ``configs/train.json`` (a name of
            :func:`monai_seg.data.layout_names`; None when the config has none).
    """

    name: str
    root: Path
    task: str
    net: str
    layout: str | None


def default_bundles_dir() -> Path:
    """``bundles/`` of the clone holding this package (editable install), else ``bundles/`` in the current folder."""
    beside = Path(__file__).resolve().parents[1] / "bundles"
    return beside if beside.is_dir() else Path("bundles")


def bundle_info(root: str | os.PathLike) -> BundleInfo:
    """Read a bundle's task, net and data layout from ``configs/metadata.json`` and ``configs/train.json``.

    Raises:
        ValueError: naming the file that is missing or unreadable.
    """
    root = Path(root)
    metadata, train_file = root / "configs" / "metadata.json", root / "configs" / "train.json"
    task = read_json(metadata).get("task", "")
    train = read_json(train_file)
    net = str(train.get("network_def", {}).get("_target_", "?")).rsplit(".", 1)[-1]
    return BundleInfo(root.name, root, task, net, train.get("layout"))


def list_bundles(bundles_dir: str | os.PathLike | None = None) -> list[BundleInfo]:
    """Every bundle (a folder with ``configs/metadata.json``) of ``bundles_dir``, sorted by name.

    Raises:
        ValueError: when ``bundles_dir`` is not a folder or holds no bundle.
    """
    bundles_dir = Path(bundles_dir) if bundles_dir is not None else default_bundles_dir()
    if not bundles_dir.is_dir():
        raise ValueError(
            f"Bundles folder {bundles_dir} does not exist: pass --bundles_dir (the bundles/ folder of a monai-seg clone)."
        )
    roots = sorted(p for p in bundles_dir.iterdir() if (p / "configs" / "metadata.json").is_file())
    if not roots:
        raise ValueError(f"Bundles folder {bundles_dir} holds no bundle (no <name>/configs/metadata.json).")
    return [bundle_info(root) for root in roots]


def find_bundle(name: str, bundles_dir: str | os.PathLike | None = None) -> BundleInfo:
    """The bundle called ``name`` (its folder name) in ``bundles_dir``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    bundles = list_bundles(bundles_dir)
    for info in bundles:
        if info.name == name:
            return info
    raise ValueError(f"Unknown bundle {name!r}; the bundles are: {', '.join(info.name for info in bundles)}.")


@contextmanager
def _file_progress(folder: str, description: str, interval: float = 0.5) -> Iterator[None]:
    """Show a progress bar of the files written under ``folder`` while the block runs."""
    done = threading.Event()
    bar = tqdm(desc=description, unit=" files", file=sys.stderr)

    def count() -> int:
        return sum(len(files) for _, _, files in os.walk(folder))

    def poll() -> None:
        while not done.wait(interval):
            bar.update(count() - bar.n)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        bar.update(count() - bar.n)
        bar.close()


def write_demo(bundle: str, out_dir: str, overwrite: bool = False, seed: int = 0,
               bundles_dir: str | os.PathLike | None = None) -> str:
    """Write the demo dataset of ``bundle``'s layout (:func:`monai_seg.data.make_demo`, defaults) into ``out_dir``.

    Args:
        bundle: bundle name.
        out_dir: dataset folder, created if needed; point the bundle at it with ``--dataset_dir``.
        overwrite: replace the dataset's existing entries.
        seed: random seed; the same seed writes identical files.
        bundles_dir: folder of the bundles.

    Raises:
        ValueError: for an unknown bundle or one without demo data.
        FileExistsError: when the dataset exists and ``overwrite`` is False.
    """
    info = find_bundle(bundle, bundles_dir)
    if info.layout is None or not monai_seg.data.has_demo(info.layout):
        raise ValueError(f"Bundle {bundle} has no demo data (the layout of its configs/train.json: {info.layout}).")
    with _file_progress(out_dir, f"{info.layout} demo data"):
        return monai_seg.data.make_demo(info.layout, out_dir, seed=seed, overwrite=overwrite)


def _image_index(dataset_dir: str) -> dict[str, list[str]]:
    """Image files of ``dataset_dir`` (recursive) by file stem."""
    index: dict[str, list[str]] = {}
    for folder, _, files in os.walk(dataset_dir):
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext.lower() in _IMAGE_EXTENSIONS:
                index.setdefault(stem, []).append(os.path.join(folder, name))
    return index


def _source_image(mask: str, index: dict[str, list[str]], dataset_dir: str) -> str:
    """The image a mask ``<stem>_<postfix>.png`` was predicted from: the longest stem that ``<stem>_`` starts with,
    preferring a file outside folders named ``*mask*`` (which hold ground truth)."""
    mask_stem = os.path.splitext(os.path.basename(mask))[0]
    stems = sorted((s for s in index if mask_stem.startswith(f"{s}_")), key=len, reverse=True)
    if not stems:
        raise ValueError(f"No image in {dataset_dir} for the mask {mask} (expected <image name>_<postfix>.png).")

    def in_mask_folder(path: str) -> bool:
        return "mask" in os.path.relpath(os.path.dirname(path), dataset_dir).lower()

    return sorted(index[stems[0]], key=lambda path: (in_mask_folder(path), path))[0]


def render_figures(output_dir: str, dataset_dir: str | None = None, num_images: int = 6,
                   maps: Sequence[str] = ("std",)) -> list[str]:
    """Render the figures of an inference output folder; return the written files.

    - 3D Monte-Carlo dropout outputs (the BraTS bundle: ``<case>_prob.nii.gz`` with ``<case>_<map>.nii.gz``):
      :func:`~monai_seg.visualize.save_uncertainty_figure` per case and map, ``<case>_<map>.png``, over the
      FLAIR of ``<dataset_dir>/<case>/``.
    - 2D masks (``<output_dir>/masks/*.png``, ``<image name>_<postfix>.png``): one
      :func:`~monai_seg.visualize.save_overlay_grid` of the first ``num_images``, ``overlays.png``, over
      their images found in ``dataset_dir``.

    Args:
        output_dir: the bundle's inference ``output_dir``.
        dataset_dir: the dataset the outputs were predicted from; default ``<output_dir>/../demo_data``
            (the bundles' default layout).
        num_images: rows of the overlay grid.
        maps: uncertainty maps to draw, of :data:`UNCERTAINTY_MAPS`.

    Raises:
        ValueError: for a missing folder, no outputs, an unknown map or an output without its image.
    """
    if not os.path.isdir(output_dir):
        raise ValueError(f"Output folder {output_dir} does not exist.")
    unknown = sorted(set(maps) - set(UNCERTAINTY_MAPS))
    if unknown:
        raise ValueError(f"Unknown uncertainty maps {unknown}; choose from {list(UNCERTAINTY_MAPS)}.")
    if dataset_dir is None:
        dataset_dir = os.path.join(os.path.dirname(os.path.abspath(output_dir)), "demo_data")
        if not os.path.isdir(dataset_dir):
            raise ValueError(f"No dataset folder {dataset_dir} beside {output_dir}: pass --dataset_dir.")
    elif not os.path.isdir(dataset_dir):
        raise ValueError(f"Dataset folder {dataset_dir} does not exist.")
    cases = sorted(name[: -len("_prob.nii.gz")] for name in os.listdir(output_dir) if name.endswith("_prob.nii.gz"))
    mask_dir = os.path.join(output_dir, "masks")
    masks = sorted(n for n in os.listdir(mask_dir) if n.endswith(".png")) if os.path.isdir(mask_dir) else []
    if not cases and not masks:
        raise ValueError(f"{output_dir} holds no bundle outputs (<case>_prob.nii.gz or masks/*.png).")
    load = LoadImage(image_only=True, ensure_channel_first=True)
    written = []
    if cases:
        volumes = monai_seg.data.load_datalist("brats", dataset_dir, labels="none", validate=False)
        images = {item["case"]: item["image"][0] for item in volumes}
        for case in tqdm(cases, desc="uncertainty figures", file=sys.stderr):
            if case not in images:
                raise ValueError(f"Output {case}_prob.nii.gz has no case folder {case} in {dataset_dir}.")
            image, prob = load(images[case]), load(os.path.join(output_dir, f"{case}_prob.nii.gz"))
            for name in maps:
                filename, source = (os.path.join(output_dir, f"{case}_{name}.{ext}") for ext in ("png", "nii.gz"))
                if not os.path.isfile(source):
                    raise ValueError(f"{output_dir} has no map {os.path.basename(source)}: the inference did not write "
                                     f"the {name} map (expected_entropy and tta_std come with configs/tta.json).")
                uncertainty = load(source)
                save_uncertainty_figure(image, prob, uncertainty, filename, uncertainty_name=name, title=case)
                written.append(filename)
    if masks:
        index = _image_index(dataset_dir)
        shown = [os.path.join(mask_dir, name) for name in masks[:num_images]]
        reader = LoadImage(image_only=True, ensure_channel_first=True, reader="PILReader")
        pairs = [(reader(_source_image(m, index, dataset_dir)), reader(m)) for m in tqdm(shown, desc="overlays",
                                                                                            file=sys.stderr)]
        filename = os.path.join(output_dir, "overlays.png")
        save_overlay_grid([p[0] for p in pairs], None, [p[1] for p in pairs], filename,
                          titles=[os.path.basename(m) for m in shown])
        written.append(filename)
    return written


def _bundle_root(args: argparse.Namespace) -> Path:
    """The bundle folder of ``monai-seg calibrate``: ``--bundle_root``, a folder given as the bundle, or the name."""
    if args.bundle_root is not None:
        return Path(args.bundle_root)
    if (Path(args.bundle) / "configs" / "metadata.json").is_file():
        return Path(args.bundle)
    return find_bundle(args.bundle, args.bundles_dir).root


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config ids that ``monai-seg calibrate`` sets: ``--dataset_dir``, ``--ckpt_dir`` and each ``--set``."""
    override: dict[str, Any] = {k: getattr(args, k) for k in ("dataset_dir", "ckpt_dir") if getattr(args, k)}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes ID=VALUE, got {item!r}.")
        try:
            override[key] = json.loads(value)
        except json.JSONDecodeError:
            override[key] = value
    return override


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monai-seg",
        description="monai-seg utilities; bundles themselves run with `python -m monai.bundle run ...`.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bundles_dir = argparse.ArgumentParser(add_help=False)
    bundles_dir.add_argument("--bundles_dir", default=None,
                             help="folder of the bundles (default: bundles/ of this clone, else ./bundles)")

    commands.add_parser("bundles", parents=[bundles_dir], help="list the bundles: task, net, data layout",
                        description="List the bundles with their task, net and data layout.")

    demo = commands.add_parser("demo", parents=[bundles_dir], help="write a bundle's demo dataset",
                               description="Write the demo dataset of BUNDLE (the layout of its real data) into "
                                           "OUT_DIR; train on it with --dataset_dir OUT_DIR.")
    demo.add_argument("bundle", help="bundle name (see `monai-seg bundles`)")
    demo.add_argument("out_dir", help="dataset folder to write")
    demo.add_argument("--overwrite", action="store_true", help="replace an existing demo dataset")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")

    calibrate = commands.add_parser(
        "calibrate", parents=[bundles_dir], help="fit a bundle's temperature scaling on its validation split",
        description="Run the trained model (<ckpt_dir>/model.pt) on the validation split of configs/train.json, fit "
                    "the temperatures of its logits (one per sigmoid channel, one for softmax) and write them with "
                    "NLL, ECE and Brier score before and after to <ckpt_dir>/calibration.json, which inference.json "
                    "and evaluate.json then apply.")
    calibrate.add_argument("bundle", help="bundle name (see `monai-seg bundles`) or a bundle folder")
    calibrate.add_argument("--bundle_root", default=None, help="the bundle folder (default: found by name)")
    calibrate.add_argument("--config_file", nargs="+", default=[],
                           help="variant configs merged onto configs/train.json, as for training")
    calibrate.add_argument("--dataset_dir", default=None, help="the dataset (default: the bundle's)")
    calibrate.add_argument("--ckpt_dir", default=None, help="folder of model.pt (default: the bundle's models/)")
    calibrate.add_argument("--set", nargs="+", default=[], metavar="ID=VALUE",
                           help="other config ids to set; VALUE is read as JSON, else as a string")
    calibrate.add_argument("--max_pixels", type=int, default=1_000_000,
                           help="validation pixels sampled for the fit (default: 1000000)")
    calibrate.add_argument("--num_bins", type=int, default=15, help="bins of the calibration error (default: 15)")
    calibrate.add_argument("--seed", type=int, default=0, help="seed of the pixel sampling (default: 0)")

    figures = commands.add_parser(
        "figures", help="render the figures of an inference output folder",
        description="Render the overlay grid of 2D masks (OUTPUT_DIR/masks/*.png -> OUTPUT_DIR/overlays.png) and "
                    "the uncertainty figure of each BraTS case (<case>_prob.nii.gz -> <case>_<map>.png).")
    figures.add_argument("output_dir", help="the bundle's inference output folder")
    figures.add_argument("--dataset_dir", default=None,
                         help="the dataset the outputs come from (default: OUTPUT_DIR/../demo_data)")
    figures.add_argument("--num_images", type=int, default=6, help="rows of the overlay grid (default: 6)")
    figures.add_argument("--maps", nargs="+", default=["std"], choices=UNCERTAINTY_MAPS,
                         help="uncertainty maps to draw (default: std)")

    score = commands.add_parser(
        "score", help="score a nerve submission against an answer key",
        description="Kaggle score of a nerve submission (img,pixels) against the true masks in the same format, "
                    "e.g. the demo data's test_masks.csv; prints the scores as JSON.")
    score.add_argument("submission", help="the submission CSV")
    score.add_argument("answer_key", help="the true masks (img,pixels)")
    score.add_argument("--min_score", type=float, default=None,
                       help="exit with status 1 when the Kaggle score is below this value")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``monai-seg`` console script.

    Args:
        argv: the arguments after the program name; None reads ``sys.argv``.

    Raises:
        SystemExit: with the error message (status 1) for bad input, as argparse does for bad usage (status 2).
    """
    args = _parser().parse_args(argv)
    try:
        if args.command == "bundles":
            rows = [(b.name, b.net, b.layout or "-", b.task) for b in list_bundles(args.bundles_dir)]
            widths = [max(len(row[i]) for row in [("bundle", "net", "data", "task"), *rows]) for i in range(3)]
            for row in [("bundle", "net", "data", "task"), *rows]:
                print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)), row[3], sep="  ")
        elif args.command == "demo":
            print(write_demo(args.bundle, args.out_dir, args.overwrite, args.seed, args.bundles_dir))
        elif args.command == "calibrate":
            record = calibrate_bundle(_bundle_root(args), args.config_file, _overrides(args), args.max_pixels,
                                      args.num_bins, args.seed)
            print(json.dumps(record, indent=1))
        elif args.command == "score":
            scores = score_submission(args.submission, args.answer_key)
            print(json.dumps(scores, indent=1))
            if args.min_score is not None and scores["kaggle_score"] < args.min_score:
                raise SystemExit(f"monai-seg score: Kaggle score {scores['kaggle_score']:.3f} is below "
                                 f"--min_score {args.min_score}.")
        else:
            print("\n".join(render_figures(args.output_dir, args.dataset_dir, args.num_images, args.maps)))
    except (ValueError, FileExistsError) as error:
        raise SystemExit(f"monai-seg {args.command}: error: {error}") from None


if __name__ == "__main__":
    main()
