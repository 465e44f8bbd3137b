"""Helpers of ``tests/integration/monailabel.sh``, run in the project's environment (not MONAI Label's).

``python -m tests.integration.monailabel_check <command> ...``:

- ``sample BUNDLE_DIR DATA_DIR STUDIES [--model MODEL]``: write the bundle's demo data to ``DATA_DIR``
  and one demo image, as MONAI Label's datastore holds it, into ``STUDIES``; prints the image path.
- ``model BUNDLE_DIR MODEL``: exit 0 when ``MODEL`` loads into ``network_def`` with ``weights_only``
  and ``strict=True`` (MONAI Label loads ``strict=False``: weights whose keys differ stay random).
- ``check BUNDLE_DIR IMAGE LABEL MODEL [--allow-empty]``: check the label MONAI Label returned for
  ``IMAGE``: its shape, its values inside ``channel_def``, non-empty (unless ``--allow-empty``, for a
  barely trained model), and equal to the bundle's own pipeline on the image with ``MODEL``.

:func:`monaibundle_pipeline` is what ``monailabel.tasks.infer.bundle.BundleInferTask`` runs.
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose, SaveImaged
from PIL import Image

from monai_seg.data import load_datalist, make_demo

NIFTI = (".nii", ".nii.gz")


def bundle_labels(bundle_dir: str | Path) -> dict[int, str]:
    """Label value -> name of the served output (``channel_def`` of the first output in metadata.json)."""
    meta = json.loads((Path(bundle_dir) / "configs" / "metadata.json").read_text())
    pred = next(iter(meta["network_data_format"]["outputs"].values()))
    return {int(k): v for k, v in pred["channel_def"].items()}


def inference_parser(bundle_dir: str | Path, **override: Any) -> ConfigParser:
    """``configs/inference.json`` with ``bundle_root`` set to ``bundle_dir`` (as MONAI Label does), on CPU."""
    parser = ConfigParser()
    parser.read_config(str(Path(bundle_dir) / "configs" / "inference.json"))
    parser.update({"bundle_root": str(bundle_dir), "device": "$torch.device('cpu')", **override})
    return parser


def load_network(parser: ConfigParser, model: str | Path | None = None) -> torch.nn.Module:
    """``network_def`` in eval mode, with ``model`` loaded as MONAI Label does but ``strict=True``.

    Raises:
        ValueError: naming ``model`` when it is not a plain state_dict or its keys or shapes do not
            match ``network_def``.
    """
    network = parser.get_parsed_content("network_def")
    if model is not None:
        try:
            network.load_state_dict(torch.load(model, map_location="cpu", weights_only=True), strict=True)
        except (RuntimeError, pickle.UnpicklingError) as e:
            raise ValueError(f"{model}: not a state_dict of the bundle's network_def (weights_only, strict): {e}") from e
    return network.eval()


def monaibundle_pipeline(
    bundle_dir: str | Path, image: str | Path, model: str | Path | None = None, **override: Any
) -> dict[str, Any]:
    """Run the bundle on one image as MONAI Label's ``BundleInferTask`` does.

    ``preprocessing``, ``inferer`` on a batch of one, then ``postprocessing`` without its ``SaveImaged``
    steps (MONAI Label's default ``post_filter``); MONAI Label then drops a leading channel of one.

    Args:
        bundle_dir: the bundle folder (``configs/``).
        image: path of one image, as the datastore holds it.
        model: a state_dict file; None keeps random weights.
        override: ids of ``inference.json`` to replace, e.g. ``num_samples``.

    Returns:
        the data dictionary; ``data["pred"]`` is the label, (1, W, H, D) in 3D or (W, H) in 2D (MONAI order).
    """
    parser = inference_parser(bundle_dir, **override)
    data = parser.get_parsed_content("preprocessing")({"image": str(image)})
    network = load_network(parser, model)
    with torch.no_grad():
        data["pred"] = parser.get_parsed_content("inferer")(data["image"][None], network)[0]
    post = parser.get_parsed_content("postprocessing")
    return Compose([t for t in post.transforms if not isinstance(t, SaveImaged)])(data)


def read_label(path: str | Path) -> np.ndarray:
    """The voxel array of a NIfTI (file order) or a 2D image file ((height, width))."""
    path = str(path)
    return np.asarray(nib.load(path).dataobj) if path.endswith(NIFTI) else np.asarray(Image.open(path))


def image_shape(path: str | Path) -> tuple[int, ...]:
    """Spatial shape of an image file: NIfTI voxel shape without the channel axis, else (height, width)."""
    path = str(path)
    return tuple(nib.load(path).shape[:3]) if path.endswith(NIFTI) else Image.open(path).size[::-1]


def write_sample(bundle_dir: str | Path, data_dir: Path, studies: Path, model: str | Path | None = None) -> Path:
    """Demo data of the bundle in ``data_dir`` and one demo image, as MONAI Label's datastore holds it, in ``studies``.

    The image is the first of the bundle's inference datalist, named ``<bundle>_<file name>``; a list of
    files (the four BraTS modalities) is stacked as one 4D NIfTI, channels last, since MONAI Label sends
    one file per image. For the nerve bundle, whose test images may hold no nerve, it is the first
    training image whose mask is not empty and, given ``model``, whose label from the bundle's own
    pipeline with ``model`` is not empty either (the presence gate blanks some images with a nerve).
    """
    bundle_dir, studies = Path(bundle_dir), Path(studies)
    studies.mkdir(parents=True, exist_ok=True)
    if bundle_dir.name.startswith("nerve"):
        items = load_datalist("nerve", make_demo("nerve", data_dir, num_subjects=4, images_per_subject=4, num_test=2))
        nerves = [i["image"] for i in items if np.asarray(Image.open(i["label"])).any()]
        found = (i for i in nerves if model is None or np.asarray(monaibundle_pipeline(bundle_dir, i, model)["pred"]).any())
        image = next(found, nerves[0])
    else:
        parser = inference_parser(bundle_dir, dataset_dir=str(data_dir), output_dir=str(data_dir / "outputs"))
        image = parser.get_parsed_content("datalist")[0]["image"]
    if isinstance(image, str):
        target = studies / f"{bundle_dir.name}_{Path(image).name}"
        shutil.copyfile(image, target)
        return target
    channels = [nib.load(p) for p in image]
    target = studies / f"{bundle_dir.name}_{Path(image[0]).parent.name}.nii.gz"
    stacked = np.stack([np.asarray(c.dataobj) for c in channels], axis=-1)
    nib.save(nib.Nifti1Image(stacked, channels[0].affine), str(target))
    return target


def check_label(
    bundle_dir: str | Path, image: str | Path, label: str | Path, model: str | Path, allow_empty: bool = False
) -> str:
    """Check a label MONAI Label returned for ``image`` with the weights ``model``; returns a one-line summary.

    Raises:
        ValueError: naming ``label`` when its shape differs from the image's, a value is outside
            ``channel_def``, it is empty (unless ``allow_empty``), or it differs from the bundle's own pipeline.
    """
    served, shape, labels = read_label(label), image_shape(image), bundle_labels(bundle_dir)
    if served.shape != shape:
        raise ValueError(f"{label}: shape {served.shape}, the image {image} has {shape}.")
    values = {int(v) for v in np.unique(served)}
    if not values <= set(labels):
        raise ValueError(f"{label}: values {sorted(values)} outside channel_def {labels}.")
    if not (allow_empty or served.any()):
        raise ValueError(f"{label}: empty segmentation for the demo image {image}.")
    own = np.asarray(monaibundle_pipeline(bundle_dir, image, model)["pred"]).squeeze()
    own = own if own.ndim == 3 else own.T  # MONAI's (width, height) -> the file's rows and columns
    agreement = float((own == served).mean())
    if agreement < 0.999:
        raise ValueError(f"{label}: agrees with the bundle's own pipeline on {agreement:.2%} of the voxels.")
    names = ", ".join(f"{labels[v]}: {int((served == v).sum())}" for v in sorted(values))
    return f"{Path(label).name}: shape {served.shape}, {names} voxels, {agreement:.4%} equal to the bundle's own run"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    sample = commands.add_parser("sample")
    sample.add_argument("bundle_dir")
    sample.add_argument("data_dir", type=Path)
    sample.add_argument("studies", type=Path)
    sample.add_argument("--model", help="the served weights: prefer an image they label as not empty")
    model = commands.add_parser("model")
    model.add_argument("bundle_dir")
    model.add_argument("model")
    check = commands.add_parser("check")
    check.add_argument("bundle_dir")
    check.add_argument("image")
    check.add_argument("label")
    check.add_argument("model")
    check.add_argument("--allow-empty", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "sample":
            print(write_sample(args.bundle_dir, args.data_dir, args.studies, args.model))
        elif args.command == "model":
            load_network(inference_parser(args.bundle_dir), args.model)
        else:
            print(check_label(args.bundle_dir, args.image, args.label, args.model, args.allow_empty))
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
