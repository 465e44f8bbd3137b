"""Kaggle-size test folder to a submission CSV with the nerve bundle's inference config, timed per stage.

Writes 5,508 demo test TIFs (580x420, the Kaggle test set's size) to a temporary folder, then

1. runs ``bundles/nerve_ultrasound_segmentation/configs/inference.json`` end to end with the
   commands a user types, timed from launch to exit (Python start-up and imports included):
   ``python -m monai.bundle run`` (one process, torch's threads), and for ``--processes N`` > 1
   ``torchrun --nproc_per_node N`` with ``multi_gpu_inference.json`` merged on top (the test set
   split over N processes of one thread each); masks as PNG plus ``submission.csv``;
2. re-runs the same parsed components one stage at a time in this process (read, resize,
   normalise, net, sigmoid, resize back, gating, PNG writing, RLE) to show where the time goes.

The net has random weights and gating is disabled (``presence_threshold 0``, ``min_pixels 0``), so
every mask is encoded: the worst case for the gating and RLE stages. Each end-to-end run reports
its processes' CPU time (user, system) and minor page faults, and its submission is checked
against the first run's (decoded masks compared pixel by pixel). ``--malloc default`` also runs
without ``monai_seg.utils.reuse_freed_memory()`` (the config's ``initialize``). Goal: <= 60 s end
to end on 2 CPU cores.

The bundle's evaluator runs ``inference_network``: :class:`monai_seg.networks.EvalOptimized`
(BatchNorm folded, dropout dropped, batch evaluated in chunks). ``--baseline`` also runs the
plain ``network`` (the path before it), one process, for the same stages and prints the ratios.
The network stage is timed with the wall clock and with the process CPU time (meaningful on a
loaded machine with ``--threads 1``).

Usage::

    python bench/submission.py [--num_images 5508] [--keep DIR] [--baseline] [--threads N]
        [--processes N [N ...]] [--num_workers N [N ...]] [--malloc reuse default] [--skip_stages]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.data import decollate_batch

from launch import timed_command
from monai_seg.data import make_nerve_test_images, rle_decode, rle_encode

BUNDLE = os.path.join(os.path.dirname(__file__), "..", "bundles", "nerve_ultrasound_segmentation")
CONFIG = os.path.join(BUNDLE, "configs", "inference.json")
MULTI_PROCESS = os.path.join(BUNDLE, "configs", "multi_gpu_inference.json")
WORST_CASE = {"presence_threshold": 0.0, "min_pixels": 0}
BASELINE = {"evaluator#network": "@network"}  # the plain net, as before EvalOptimized


def write_checkpoint(path: str) -> None:
    """Random weights for the bundle's network (the timing does not depend on them)."""
    parser = ConfigParser()
    parser.read_config(CONFIG)
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), path)


def bundle_command(processes: int, overrides: dict) -> list[str]:
    """The user's command line: ``python -m monai.bundle run`` or, for several processes, under ``torchrun``."""
    if processes == 1:
        launch, config = [sys.executable], CONFIG
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        launch = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                  f"--master_port={port}"]
        config = json.dumps([CONFIG, MULTI_PROCESS])
    flags = [f"--{k}={v}" for k, v in overrides.items()]
    return launch + ["-m", "monai.bundle", "run", "--config_file", config, "--logging_file", "False"] + flags


@dataclass
class Run:
    """One end-to-end run of the bundle's inference command."""

    baseline: bool = False
    processes: int = 1
    num_workers: int | None = None
    default_malloc: bool = False

    @property
    def label(self) -> str:
        parts = ["baseline" if self.baseline else "optimised", f"{self.processes} process{'es' * (self.processes > 1)}"]
        parts += [f"num_workers {self.num_workers}"] * (self.num_workers is not None)
        return ", ".join(parts + ["glibc's default malloc"] * self.default_malloc)


def run_bundle(run: Run, dataset_dir: str, output_dir: str, checkpoint: str, threads: int | None) -> dict[str, float]:
    """Wall seconds from launch to exit of the bundle's inference command, with its processes' CPU
    seconds (user, system) and minor page faults; raises when the command fails."""
    overrides = {"dataset_dir": dataset_dir, "output_dir": output_dir, "checkpoint": checkpoint,
                 "bundle_root": BUNDLE, "overwrite": True, **WORST_CASE, **(BASELINE if run.baseline else {})}
    if run.num_workers is not None:
        overrides["num_workers"] = run.num_workers
    if run.default_malloc:
        overrides["initialize"] = "[]"  # without monai_seg.utils.reuse_freed_memory()
    env = {"OMP_NUM_THREADS": str(threads)} if threads else {}
    return timed_command(bundle_command(run.processes, overrides), env)


def stage_times(
    dataset_dir: str, output_dir: str, checkpoint: str, batch_size: int, baseline: bool
) -> dict[str, float]:
    """Each preprocessing and postprocessing transform, the net and RLE, timed separately in one process."""
    parser = ConfigParser()
    parser.read_config(CONFIG)
    parser.update({"dataset_dir": dataset_dir, "output_dir": output_dir, "bundle_root": BUNDLE, **WORST_CASE})
    parser.get_parsed_content("initialize")  # as the bundle run does first (monai_seg.utils.reuse_freed_memory)
    preprocessing = parser.get_parsed_content("preprocessing")
    postprocessing = parser.get_parsed_content("postprocessing")
    network = parser.get_parsed_content("network").eval()
    network.load_state_dict(torch.load(checkpoint, weights_only=True))
    if not baseline:
        network = parser.get_parsed_content("inference_network").eval()
    datalist = parser.get_parsed_content("datalist")
    device = parser.get_parsed_content("device")

    times: dict[str, float] = defaultdict(float)

    def timed(name: str, fn, x):
        start, cpu = time.perf_counter(), time.process_time()
        out = fn(x)
        times[name] += time.perf_counter() - start
        if name == "network":
            times["network (process CPU time)"] += time.process_time() - cpu
        return out

    for first in range(0, len(datalist), batch_size):
        items = datalist[first : first + batch_size]
        for t in preprocessing.transforms:
            items = [timed(type(t).__name__, t, item) for item in items]
        batch = torch.stack([item["image"] for item in items]).to(device)
        with torch.inference_mode():
            pred = timed("network", network, batch)
        outputs = decollate_batch({"pred": pred.cpu(), "image": torch.stack([i["image"] for i in items])})
        outputs = [{**out, "image": item["image"]} for out, item in zip(outputs, items)]
        for t in postprocessing.transforms:
            outputs = [timed(type(t).__name__, t, out) for out in outputs]
        for out in outputs:
            timed("RLE", lambda m: rle_encode(m.numpy().T > 0), out["pred"])
    return dict(times)


def differing_pixels(csv_a: str, csv_b: str, shape: tuple[int, int] = (420, 580)) -> tuple[int, int]:
    """Pixels whose decoded masks differ between two submissions with the same images, and all pixels."""
    rows = []
    for path in (csv_a, csv_b):
        with open(path) as f:
            rows.append([line.rstrip("\n").split(",") for line in f][1:])
    if [r[0] for r in rows[0]] != [r[0] for r in rows[1]]:
        raise ValueError(f"{csv_a} and {csv_b} list different images.")
    diff = sum(int(np.sum(rle_decode(a[1], shape) != rle_decode(b[1], shape))) for a, b in zip(*rows))
    return diff, len(rows[0]) * shape[0] * shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_images", type=int, default=5508)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--keep", default=None, help="folder for the data and outputs (default: a temporary one)")
    parser.add_argument("--baseline", action="store_true", help="also run the plain network (one process)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the stage pass and OMP_NUM_THREADS of the end-to-end runs "
                             "(default: torch's choice; torchrun's is 1 a process)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2],
                        help="processes of the end-to-end runs, one optimised run each (> 1: under torchrun)")
    parser.add_argument("--num_workers", type=int, nargs="+", default=[None],
                        help="loader workers of the end-to-end runs, one optimised run each (default: the config's)")
    parser.add_argument("--malloc", nargs="+", choices=["reuse", "default"], default=["reuse"],
                        help="reuse: the config's reuse_freed_memory(); default: glibc's default (one run each)")
    parser.add_argument("--skip_stages", action="store_true", help="end-to-end runs only, no per-stage pass")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = {"optimised": False, "baseline": True} if args.baseline else {"optimised": False}

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or tmp
        dataset_dir = os.path.join(root, "data")
        start = time.perf_counter()
        make_nerve_test_images(os.path.join(dataset_dir, "test"), args.num_images, overwrite=True)
        os.makedirs(os.path.join(dataset_dir, "train"), exist_ok=True)  # the layout's other half, unused here
        print(f"wrote {args.num_images} test TIFs in {time.perf_counter() - start:.1f} s")
        checkpoint = os.path.join(root, "model.pt")
        write_checkpoint(checkpoint)

        totals, outs, stages = {}, {}, {}
        runs = [Run(False, p, w, m == "default") for p in args.processes for w in args.num_workers for m in args.malloc]
        print("| run | s, launch to exit | img/s | CPU user s | CPU system s | page faults | mask pixels that differ "
              "from the first run's |\n|---|---|---|---|---|---|---|")
        for run in runs + [Run(baseline=True)] * args.baseline:
            out = os.path.join(root, "bundle_out_" + run.label.replace(", ", "_").replace(" ", "").replace("'", ""))
            measured = run_bundle(run, dataset_dir, out, checkpoint, args.threads)
            totals.setdefault("baseline" if run.baseline else "optimised", measured["wall"])
            outs[run.label] = os.path.join(out, "submission.csv")
            diff, pixels = differing_pixels(outs[next(iter(outs))], outs[run.label])
            print(f"| {run.label} | {measured['wall']:.1f} | {args.num_images / measured['wall']:.0f} | "
                  f"{measured['user']:.1f} | {measured['sys']:.1f} | {measured['faults']:.2e} | {diff} of {pixels} |",
                  flush=True)
        if args.baseline:
            print(f"\noptimised / baseline end to end (first optimised run, 1 process each): "
                  f"{totals['optimised'] / totals['baseline']:.2f}")
        if args.skip_stages:
            return
        for name, baseline in paths.items():
            stages[name] = stage_times(dataset_dir, os.path.join(root, f"stage_out_{name}"), checkpoint,
                                       args.batch_size, baseline)

        names = list(paths)
        print("\n| stage | " + " | ".join(f"{n} s" for n in names) + (" | optimised / baseline |" if args.baseline else " |"))
        print("|---" * (len(names) + 1 + args.baseline) + "|")
        sums = {n: sum(v for k, v in stages[n].items() if "CPU" not in k) for n in names}
        for stage in stages["optimised"]:
            values = [stages[n][stage] for n in names]
            ratio = f" | {values[0] / values[1]:.2f} |" if args.baseline else " |"
            print(f"| {stage} | " + " | ".join(f"{v:.1f}" for v in values) + ratio)
        ratio = f" | {sums['optimised'] / sums['baseline']:.2f} |" if args.baseline else " |"
        print("| sum (one process, no loader workers; CPU time row excluded) | "
              + " | ".join(f"{sums[n]:.1f}" for n in names) + ratio)


if __name__ == "__main__":
    main()
