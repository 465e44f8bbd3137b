"""Run a repository bundle in-process, with its outputs redirected to a temporary folder."""

from __future__ import annotations

import csv
import json

from pathlib import Path

import torch
from monai.bundle import ConfigParser, run

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "bundles"
SCHEMA = REPO / "monai_seg" / "resources" / "meta_schema.json"

ROLE_FILES = ("train.json", "evaluate.json", "inference.json", "multi_gpu_train.json", "multi_gpu_inference.json",
              "metadata.json")
"""Config files of a bundle's entry points; any other (``r2unet.json``) is a variant merged on top."""


TINY_NETS: dict[str, tuple[dict, list[int]]] = {
    "brats_mri_uncertainty": ({"network_def#channels": [8, 16, 32], "network_def#blocks": [1, 1, 1]}, [1, 4, 32, 32]),
    "nerve_ultrasound_segmentation": ({"network_def#channels": [16, 32, 64, 128, 256]}, [1, 1, 112, 80]),
    "retina_vessel_segmentation": ({"network_def#channels": [4, 8, 16, 32, 64]}, [1, 3, 32, 48]),
    "skin_lesion_segmentation": ({"network_def#channels": [4, 8, 16, 32, 64]}, [1, 3, 32, 32]),
    "xray_multiclass_segmentation": ({"network_def#features": [4, 4, 8, 16, 32, 4]}, [1, 1, 32, 32]),
}
"""Bundle -> (``network_def`` overrides of a tiny net of ``inference.json``, an input shape ``[1, C, *spatial]``)."""


def config_files(bundle: str, *names: str) -> list[str]:
    """Paths of ``bundles/<bundle>/configs/<name>`` for each name, in merge order."""
    return [str(BUNDLES / bundle / "configs" / name) for name in names]


def bundle_network(bundle: str, config: str = "inference.json", **override) -> torch.nn.Module:
    """The plain net of a bundle config's ``network_def`` (with ``override``), as MONAI Label and
    ``ckpt_export`` build it: a checkpoint saved from it is one the bundle loads."""
    parser = ConfigParser()
    parser.read_config(config_files(bundle, config))
    parser.update(override)
    return parser.get_parsed_content("network_def")


def run_bundle(bundle: str, names: list[str], run_id: str = "run", **override) -> None:
    """``python -m monai.bundle run <run_id> --config_file [...] --<key> <value> ...``, in this process."""
    files = config_files(bundle, *names)
    run(
        run_id=run_id,
        config_file=files if len(files) > 1 else files[0],
        meta_file=str(BUNDLES / bundle / "configs" / "metadata.json"),
        logging_file=str(BUNDLES / bundle / "configs" / "logging.conf"),
        **override,
    )


def check_retention_report(output_dir: Path, num_cases: int, prefix: str = "") -> list[dict[str, str]]:
    """Assert that an evaluation wrote its retention curve (CSV, PNG, areas in the summary) and a review list of
    ``num_cases`` cases sorted by score, the most uncertain first; return the review list's rows."""
    with open(output_dir / f"{prefix}retention_curve.csv") as f:
        curve = list(csv.DictReader(f))
    assert len(curve) == num_cases and float(curve[0]["fraction_referred"]) == 0.0
    with open(output_dir / f"{prefix}triage_cases.csv") as f:
        cases = list(csv.DictReader(f))
    scores = [float(row["score"]) for row in cases]
    assert len(cases) == num_cases and scores == sorted(scores, reverse=True)
    assert [int(row["rank"]) for row in cases] == list(range(1, num_cases + 1))
    assert (output_dir / f"{prefix}retention_curve.png").stat().st_size > 0
    summary = json.loads((output_dir / "metrics_summary.json").read_text())
    for name in ("auc", "random_auc", "oracle_auc"):
        assert 0.0 <= summary[f"{prefix}retention_{name}"] <= 1.0, name
    assert summary[f"{prefix}retention_auc"] <= summary[f"{prefix}retention_oracle_auc"] + 1e-9
    return cases
