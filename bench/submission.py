"""Kaggle-size test folder to a submission CSV with the nerve bundle's inference config, timed per stage.

Writes 5,508 demo test TIFs (580x420, the Kaggle test set's size) to a temporary folder, then

1. runs ``bundles/nerve_ultrasound_segmentation/configs/inference.json`` end to end through
   ``monai.bundle.run`` (the product path: masks as PNG plus ``submission.csv``), and
2. re-runs the same parsed components one stage at a time (read, resize, normalise, net, sigmoid,
   resize back, gating, PNG writing, RLE) to show where the time goes.

The net has random weights and gating is disabled (``presence_threshold 0``, ``min_pixels 0``), so
every mask is encoded: the worst case for the gating and RLE stages. Goal: <= 60 s end to end on 2
CPU cores.

Usage::

    python bench/submission.py [--num_images 5508] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict

import torch
from monai.bundle import ConfigParser, run
from monai.data import decollate_batch

from monai_seg.data import make_nerve_test_images, rle_encode

BUNDLE = os.path.join(os.path.dirname(__file__), "..", "bundles", "nerve_ultrasound_segmentation")
CONFIG = os.path.join(BUNDLE, "configs", "inference.json")
WORST_CASE = {"presence_threshold": 0.0, "min_pixels": 0}


def write_checkpoint(path: str) -> None:
    """Random weights for the bundle's network (the timing does not depend on them)."""
    parser = ConfigParser()
    parser.read_config(CONFIG)
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), path)


def run_bundle(dataset_dir: str, output_dir: str, checkpoint: str) -> float:
    start = time.perf_counter()
    run(config_file=CONFIG, logging_file=False, dataset_dir=dataset_dir, output_dir=output_dir,
        checkpoint=checkpoint, bundle_root=BUNDLE, **WORST_CASE)
    return time.perf_counter() - start


def stage_times(dataset_dir: str, output_dir: str, checkpoint: str, batch_size: int) -> dict[str, float]:
    """Each preprocessing and postprocessing transform, the net and RLE, timed separately in one process."""
    parser = ConfigParser()
    parser.read_config(CONFIG)
    parser.update({"dataset_dir": dataset_dir, "output_dir": output_dir, "bundle_root": BUNDLE, **WORST_CASE})
    preprocessing = parser.get_parsed_content("preprocessing")
    postprocessing = parser.get_parsed_content("postprocessing")
    network = parser.get_parsed_content("network").eval()
    network.load_state_dict(torch.load(checkpoint, weights_only=True))
    datalist = parser.get_parsed_content("datalist")
    device = parser.get_parsed_content("device")

    times: dict[str, float] = defaultdict(float)

    def timed(name: str, fn, x):
        start = time.perf_counter()
        out = fn(x)
        times[name] += time.perf_counter() - start
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_images", type=int, default=5508)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--keep", default=None, help="folder for the data and outputs (default: a temporary one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or tmp
        dataset_dir = os.path.join(root, "data")
        start = time.perf_counter()
        make_nerve_test_images(os.path.join(dataset_dir, "test"), args.num_images, overwrite=True)
        os.makedirs(os.path.join(dataset_dir, "train"), exist_ok=True)  # the layout's other half, unused here
        print(f"wrote {args.num_images} test TIFs in {time.perf_counter() - start:.1f} s")
        checkpoint = os.path.join(root, "model.pt")
        write_checkpoint(checkpoint)

        total = run_bundle(dataset_dir, os.path.join(root, "bundle_out"), checkpoint)
        with open(os.path.join(root, "bundle_out", "submission.csv")) as f:
            rows = sum(1 for _ in f) - 1
        print(f"\nbundle inference (monai.bundle run inference.json): {total:.1f} s for {rows} images "
              f"({rows / total:.0f} img/s), torch threads {torch.get_num_threads()}\n")

        times = stage_times(dataset_dir, os.path.join(root, "stage_out"), checkpoint, args.batch_size)
        whole = sum(times.values())
        print("| stage | s | share |\n|---|---|---|")
        for name, seconds in times.items():
            print(f"| {name} | {seconds:.1f} | {100 * seconds / whole:.0f}% |")
        print(f"| sum (one process, no loader workers) | {whole:.1f} | 100% |")


if __name__ == "__main__":
    main()
