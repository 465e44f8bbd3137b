"""Every bundle's multi_gpu_train.json: the nerve bundle under torchrun with 2 CPU processes (gloo), and
every bundle's DDP config instantiated in-process in a 1-process gloo group (rank 0 and a simulated rank 1)."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import ignite.distributed as idist
import pytest
import torch
import torch.distributed as dist
from ignite.handlers import ProgressBar
from monai.bundle import ConfigParser
from monai.data import DistributedSampler
from monai.handlers import CheckpointSaver, StatsHandler, TensorBoardStatsHandler
from torch.nn.parallel import DistributedDataParallel

from monai_seg.data import make_demo
from monai_seg.handlers import OverlayGrid, TrainingCurves
from tests.bundle_utils import BUNDLES, REPO, bundle_network, config_files, run_bundle

BUNDLE_NAMES = sorted(p.name for p in BUNDLES.iterdir() if (p / "configs" / "multi_gpu_train.json").is_file())
SMALL_CHANNELS = [16, 32, 64, 128, 256]
# the handlers that write files or print: built on rank 0 only (a CheckpointSaver is built on every rank
# since the resume state holds it; its ignite DiskSaver writes on rank 0 only)
RANK0_ONLY = (TensorBoardStatsHandler, StatsHandler, TrainingCurves, OverlayGrid, ProgressBar)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_training_keeps_ranks_in_sync(tmp_path):
    # 5 images per subject: the one validation subject splits unevenly over the ranks (3 + 2 images)
    data = make_demo("nerve", str(tmp_path / "data"), num_subjects=4, images_per_subject=5, num_test=1)
    # a last config layer that makes every rank save its final weights and validation metrics, to compare them
    dump = tmp_path / "dump.json"
    dump.write_text(json.dumps({"finalize": [
        f"$torch.save({{'weights': @network.module.state_dict(), 'metrics': @validate#evaluator.state.metrics}},"
        f" '{tmp_path}/rank' + str(dist.get_rank()) + '.pt')",
        "$dist.destroy_process_group()",
    ]}))
    files = config_files("nerve_ultrasound_segmentation", "train.json", "multi_gpu_train.json") + [str(dump)]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
        "-m", "monai.bundle", "run", "training", "--config_file", json.dumps(files),
        "--dataset_dir", data, "--ckpt_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "eval"),
        "--epochs", "1", "--batch_size", "4", "--num_workers", "0",
        "--network_def#channels", json.dumps(SMALL_CHANNELS),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0["weights"].keys() == rank1["weights"].keys()
    assert all(torch.equal(rank0["weights"][k], rank1["weights"][k]) for k in rank0["weights"])  # DDP all-reduce
    assert "model.pt" in os.listdir(tmp_path / "models")  # the best-metric checkpoint
    # the validation report gathers both ranks' images: the 5 images of the validation subject, none padded
    summary = json.loads((tmp_path / "eval" / "validation" / "metrics_summary.json").read_text())
    assert summary["num_images"] == 5
    # the key metric is reduced over both ranks' images: the same on both, and the report's mean Kaggle Dice
    assert rank0["metrics"]["val_kaggle_dice"] == rank1["metrics"]["val_kaggle_dice"]
    assert rank0["metrics"]["val_kaggle_dice"] == pytest.approx(summary["dice"], abs=1e-6)
    # only rank 0 wrote TensorBoard events (the trainer's and the evaluator's writer): one process id
    events = [f for f in os.listdir(tmp_path / "eval") if f.startswith("events.out.tfevents")]
    assert len(events) == 2 and len({f.split(".")[-2] for f in events}) == 1, events
    assert (tmp_path / "eval" / "training_curves.png").is_file()


def test_two_process_inference_writes_the_one_process_submission(tmp_path):
    """multi_gpu_inference.json: the test set split over 2 CPU processes gives the one-process outputs."""
    data = make_demo("nerve", str(tmp_path / "data"), num_subjects=2, images_per_subject=1, num_test=7)
    (Path(data) / "test" / "8.tif").write_bytes(b"not a tif")  # skipped; listed once in failures.csv
    torch.manual_seed(0)
    net = bundle_network("nerve_ultrasound_segmentation", **{"network_def#channels": SMALL_CHANNELS})
    torch.save(net.state_dict(), tmp_path / "model.pt")
    common = {"dataset_dir": data, "checkpoint": str(tmp_path / "model.pt"), "presence_threshold": 0.0,
              "min_pixels": 0, "skip_invalid": True, "network_def#channels": SMALL_CHANNELS}
    one, two = tmp_path / "one", tmp_path / "two"
    run_bundle("nerve_ultrasound_segmentation", ["inference.json"], output_dir=str(one), num_workers=0, **common)

    files = config_files("nerve_ultrasound_segmentation", "inference.json", "multi_gpu_inference.json")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
        "-m", "monai.bundle", "run", "--config_file", json.dumps(files), "--output_dir", str(two),
    ] + [f"--{k}={json.dumps(v)}" for k, v in common.items()]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # 4 + 3 images over the ranks, none padded: rank 0 wrote all 7 rows, each rank its own masks
    submission = (two / "submission.csv").read_text()
    assert submission == (one / "submission.csv").read_text() and submission.count("\n") == 8
    assert sorted(os.listdir(two / "masks")) == sorted(os.listdir(one / "masks")) != []
    with open(two / "failures.csv") as f:
        assert [row["file"].rsplit("/", 1)[-1] for row in csv.DictReader(f)] == ["8.tif"]
    assert result.stderr.count("validating Kaggle nerve") == 0  # 7 cases: no bar; a large list shows rank 0's

    # run again: rank 0 finds the outputs and both ranks stop with its error, without waiting on each other
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert (result.stdout + result.stderr).count("--overwrite true") >= 2, result.stderr[-3000:]
    assert (two / "submission.csv").read_text() == submission


@pytest.fixture(scope="module")
def gloo_group() -> Iterator[None]:
    """A 1-process gloo group: ``multi_gpu_train.json``'s ``dist_init`` finds it initialized and keeps it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCAL_RANK", "0")
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
        yield
        dist.destroy_process_group()
        idist.sync()  # ignite took the group as its distributed context: back to serial for the other tests


def parse_ddp(bundle: str, tmp_path: Path, **override) -> ConfigParser:
    """train.json + multi_gpu_train.json of ``bundle``, stand-in datasets (no data read), outputs in ``tmp_path``."""
    parser = ConfigParser()
    parser.read_config(config_files(bundle, "train.json", "multi_gpu_train.json"))
    parser.update({
        "train#dataset": [0, 1], "validate#dataset": [0, 1], "num_workers": 0,
        "output_dir": str(tmp_path / "eval"), "ckpt_dir": str(tmp_path / "models"), **override,
    })
    return parser


@pytest.mark.usefixtures("gloo_group")
@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_multi_gpu_config_wraps_ddp_and_attaches_writers_on_rank0_only(bundle, tmp_path):
    parser = parse_ddp(bundle, tmp_path / "rank0")
    trainer, evaluator = parser.get_parsed_content("train#trainer"), parser.get_parsed_content("validate#evaluator")
    assert isinstance(trainer.network, DistributedDataParallel) and evaluator.network is trainer.network
    assert isinstance(trainer.data_loader.sampler, DistributedSampler)
    assert isinstance(evaluator.data_loader.sampler, DistributedSampler)
    assert parser["validate#sampler"]["even_divisible"] is False  # no padded duplicates in the validation metrics
    rank0 = parser.get_parsed_content("train#handlers") + parser.get_parsed_content("validate#handlers")
    for kind in (TensorBoardStatsHandler, CheckpointSaver, TrainingCurves):
        assert any(isinstance(h, kind) for h in rank0), kind
    assert len(os.listdir(tmp_path / "rank0" / "eval")) == 2  # the two TensorBoard writers' event files

    # what rank 1 builds: the collective handlers (validation, early stop, LR schedule, report, checkpoint) only
    parser = parse_ddp(bundle, tmp_path / "rank1", is_not_rank0=True)
    others = parser.get_parsed_content("train#handlers") + parser.get_parsed_content("validate#handlers")
    assert not [h for h in others if isinstance(h, RANK0_ONLY)]
    assert len(others) == len(rank0) - sum(isinstance(h, RANK0_ONLY) for h in rank0)
    assert not (tmp_path / "rank1" / "eval").exists()
