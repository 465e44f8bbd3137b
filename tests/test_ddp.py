"""The nerve bundle's multi_gpu_train.json under torchrun with 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from monai_seg.data import make_nerve_demo
from tests.bundle_utils import REPO, config_files


def test_two_process_training_keeps_ranks_in_sync(tmp_path):
    data = make_nerve_demo(str(tmp_path / "data"), num_subjects=4, images_per_subject=4, num_test=1)
    # a last config layer that makes every rank save its final weights, to compare them
    dump = tmp_path / "dump.json"
    dump.write_text(json.dumps({"finalize": [
        f"$torch.save(@network.module.state_dict(), '{tmp_path}/rank' + str(dist.get_rank()) + '.pt')",
        "$dist.destroy_process_group()",
    ]}))
    files = config_files("nerve_ultrasound_segmentation", "train.json", "multi_gpu_train.json") + [str(dump)]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
        "-m", "monai.bundle", "run", "training", "--config_file", json.dumps(files),
        "--dataset_dir", data, "--ckpt_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "eval"),
        "--epochs", "1", "--batch_size", "4", "--num_workers", "0",
        "--network_def#channels", "[16, 32, 64, 128, 256]",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # DDP all-reduced every step
    assert os.listdir(tmp_path / "models") == ["model.pt"]  # one checkpoint, written by rank 0
    # the validation report gathers both ranks' images: the one validation subject, 4 images
    summary = json.loads((tmp_path / "eval" / "validation" / "metrics_summary.json").read_text())
    assert summary["num_images"] == 4
