"""Bundle trainings with and without ``monai_seg.utils.reuse_freed_memory()``, launch to exit.

For each bundle, writes its demo dataset once (``monai-seg demo``), then runs the user's command

    python -m monai.bundle run training --config_file bundles/<name>/configs/train.json --epochs E ...

once with the config as shipped (its ``initialize`` calls ``reuse_freed_memory()`` first) and once
with that call removed (glibc's default malloc), for each ``--num_workers``, one after the other.
Reports the wall time, the CPU time (user, system) and minor page faults of the command's processes,
the ratio of the two wall times measured in the same run, and whether both runs end with bitwise
equal weights (the allocator must not change a number).

Usage::

    python bench/training_memory.py [--bundles NAME ...] [--epochs 3] [--num_workers N [N ...]]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from monai.bundle import ConfigParser

from launch import timed_command

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BUNDLES = sorted(p for p in os.listdir(os.path.join(REPO, "bundles")) if not p.startswith("."))
REUSE = "$monai_seg.utils.reuse_freed_memory()"


def train(bundle: str, data: str, out: str, epochs: int, num_workers: int | None, reuse: bool) -> dict[str, float]:
    """Measures of one training command; its weights in ``out/models/checkpoint_latest.pt``."""
    config = os.path.join(REPO, "bundles", bundle, "configs", "train.json")
    parser = ConfigParser()
    parser.read_config(config)
    if REUSE not in parser["initialize"]:
        raise ValueError(f"{config}: its initialize does not call {REUSE}")
    flags = {"epochs": epochs, "dataset_dir": data, "ckpt_dir": os.path.join(out, "models"),
             "output_dir": os.path.join(out, "eval"), "bundle_root": os.path.join(REPO, "bundles", bundle)}
    if num_workers is not None:
        flags["num_workers"] = num_workers
    if not reuse:
        flags["initialize"] = json.dumps([step for step in parser["initialize"] if step != REUSE])
    command = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", config]
    return timed_command(command + [f"--{k}={v}" for k, v in flags.items()])


def same_weights(out_a: str, out_b: str) -> bool:
    a, b = (torch.load(os.path.join(o, "models", "checkpoint_latest.pt"), weights_only=True)["network"]
            for o in (out_a, out_b))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", nargs="+", default=BUNDLES, choices=BUNDLES)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--num_workers", type=int, nargs="+", default=[None],
                        help="loader workers, one pair of runs each (default: the config's)")
    args = parser.parse_args()
    print(f"{args.epochs} epochs on each bundle's demo data, torch threads {torch.get_num_threads()}\n")
    print("| bundle | num_workers | malloc | s, launch to exit | CPU user s | CPU system s | page faults | "
          "reuse / default | same weights |\n|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as root:
        for bundle in args.bundles:
            data = os.path.join(root, bundle, "data")
            subprocess.run([sys.executable, "-m", "monai_seg.cli", "demo", bundle, data], check=True,
                           capture_output=True)
            for workers in args.num_workers:
                outs = {mode: os.path.join(root, bundle, f"{mode}_{workers}") for mode in ("reuse", "default")}
                measured = {mode: train(bundle, data, out, args.epochs, workers, mode == "reuse")
                            for mode, out in outs.items()}
                ratio = measured["reuse"]["wall"] / measured["default"]["wall"]
                same = same_weights(*outs.values())
                for mode, m in measured.items():
                    print(f"| {bundle} | {'config' if workers is None else workers} | {mode} | {m['wall']:.1f} | "
                          f"{m['user']:.1f} | {m['sys']:.1f} | {m['faults']:.2e} | "
                          + (f"{ratio:.2f} | {same} |" if mode == "reuse" else "| |"), flush=True)


if __name__ == "__main__":
    main()
