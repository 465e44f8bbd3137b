"""Kaggle-size test folder to a submission CSV with the nerve bundle's inference config, timed per stage.

Writes 5,508 demo test TIFs (580x420, the Kaggle test set's size) to a temporary folder, then

1. runs ``bundles/nerve_ultrasound_segmentation/configs/inference.json`` end to end through
   ``monai.bundle.run`` (the product path: masks as PNG plus ``submission.csv``), and
2. re-runs the same parsed components one stage at a time (read, resize, normalise, net, sigmoid,
   resize back, gating, PNG writing, RLE) to show where the time goes.

The net has random weights and gating is disabled (``presence_threshold 0``, ``min_pixels 0``), so
every mask is encoded: the worst case for the gating and RLE stages. Goal: <= 60 s end to end on 2
CPU cores.

The bundle's evaluator runs ``inference_network``: :class:`monai_seg.networks.EvalOptimized`
(BatchNorm folded, dropout dropped, batch evaluated in chunks). ``--baseline`` also runs the
plain ``network`` (the path before it) in the same process, for the same stages, prints the
ratios and checks that both submissions decode to the same masks. The network stage is timed
with the wall clock and with the process CPU time (meaningful on a loaded machine with
``--threads 1``).

Usage::

    python bench/submission.py [--num_images 5508] [--keep DIR] [--baseline] [--threads N]
        [--num_workers N [N ...]] [--skip_stages]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict

import numpy as np
import torch
from monai.bundle import ConfigParser, run
from monai.data import decollate_batch

from monai_seg.data import make_nerve_test_images, rle_decode, rle_encode

BUNDLE = os.path.join(os.path.dirname(__file__), "..", "bundles", "nerve_ultrasound_segmentation")
CONFIG = os.path.join(BUNDLE, "configs", "inference.json")
WORST_CASE = {"presence_threshold": 0.0, "min_pixels": 0}
BASELINE = {"evaluator#network": "@network"}  # the plain net, as before EvalOptimized


def write_checkpoint(path: str) -> None:
    """Random weights for the bundle's network (the timing does not depend on them)."""
    parser = ConfigParser()
    parser.read_config(CONFIG)
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), path)


def run_bundle(dataset_dir: str, output_dir: str, checkpoint: str, baseline: bool, num_workers: int | None) -> float:
    start = time.perf_counter()
    workers = {} if num_workers is None else {"num_workers": num_workers}
    run(config_file=CONFIG, logging_file=False, dataset_dir=dataset_dir, output_dir=output_dir,
        checkpoint=checkpoint, bundle_root=BUNDLE, overwrite=True, **WORST_CASE, **(BASELINE if baseline else {}), **workers)
    return time.perf_counter() - start


def stage_times(
    dataset_dir: str, output_dir: str, checkpoint: str, batch_size: int, baseline: bool
) -> dict[str, float]:
    """Each preprocessing and postprocessing transform, the net and RLE, timed separately in one process."""
    parser = ConfigParser()
    parser.read_config(CONFIG)
    parser.update({"dataset_dir": dataset_dir, "output_dir": output_dir, "bundle_root": BUNDLE, **WORST_CASE})
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
    parser.add_argument("--baseline", action="store_true", help="also run the plain network, in the same process")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--num_workers", type=int, nargs="+", default=[None],
                        help="loader workers of the end-to-end runs, one optimised run each (default: the bundle's)")
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
        runs = [(f"optimised, num_workers {w}" if w is not None else "optimised", False, w) for w in args.num_workers]
        for label, baseline, workers in runs + [("baseline", True, None)] * args.baseline:
            out = os.path.join(root, f"bundle_out_{label.replace(', ', '_').replace(' ', '')}")
            name = "baseline" if baseline else "optimised"
            seconds = run_bundle(dataset_dir, out, checkpoint, baseline, workers)
            totals.setdefault(name, seconds)
            outs.setdefault(name, out)
            with open(os.path.join(out, "submission.csv")) as f:
                rows = sum(1 for _ in f) - 1
            print(f"\nbundle inference, {label} (monai.bundle run inference.json): {seconds:.1f} s for {rows} "
                  f"images ({rows / seconds:.0f} img/s), torch threads {torch.get_num_threads()}")
        if args.baseline:
            diff, pixels = differing_pixels(*(os.path.join(outs[n], "submission.csv") for n in paths))
            print(f"\noptimised / baseline end to end: {totals['optimised'] / totals['baseline']:.2f}; "
                  f"mask pixels that differ: {diff} of {pixels} ({diff / pixels:.1e})")
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
