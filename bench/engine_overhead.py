"""A bundle's training (its ``train.json``, MONAI's ``SupervisedTrainer`` and handlers) against a bare PyTorch loop
doing the same work, in one run.

Both runs build their objects from the same parsed config, on the same demo data cached in memory
(``CacheDataset``), with the same seed: the same network, loss, optimiser, learning-rate schedule, batches
(random augmentations included) and a validation every epoch through the bundle's validation postprocessing
and its two epoch metrics (the key metric and the early-stopping metric). The bare loop is the least code that
does this work; the bundle adds its handlers (checkpoints, early stopping, TensorBoard, progress bar, report,
figures) and Ignite's event machinery. Reported: seconds per epoch of each, their ratio (goal <= 1.10), whether
the final weights agree, and, for every handler of the bundle, the time saved by removing it alone (what costs).
Config parsing and caching are outside the timings; the first epoch of each run is included.

Usage::

    python bench/engine_overhead.py [--bundle nerve_ultrasound_segmentation] [--epochs 4] [--repeats 2]
                                    [--set batch_size 16] [--no_ablation]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable

import torch
from monai.bundle import ConfigParser
from monai.data import decollate_batch
from monai.utils import set_determinism

from monai_seg.data import ensure_demo

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def parser_for(bundle: str, data: str, out: str, epochs: int, override: dict, drop: str | None = None) -> ConfigParser:
    """The bundle's ``train.json`` on ``data`` with outputs in ``out``, ``epochs`` epochs, no early stop, no
    workers, then ``override``; ``drop``: the ``_target_`` of one train/validate/resume handler to remove."""
    parser = ConfigParser()
    parser.read_config(os.path.join(REPO, "bundles", bundle, "configs", "train.json"))
    parser.update({"dataset_dir": data, "ckpt_dir": os.path.join(out, "models"), "output_dir": os.path.join(out, "eval"),
                   "bundle_root": os.path.join(REPO, "bundles", bundle), "epochs": epochs, "num_workers": 0,
                   "early_stop_patience": epochs + 1, "overwrite": True, **override})
    if drop is not None:
        for key in ("train#handlers", "validate#handlers", "resume_handlers"):
            handlers = [h for h in parser[key] if handler_name(parser, h) != drop]
            parser[key] = handlers
    return parser


def handler_name(parser: ConfigParser, handler: dict | str) -> str:
    """The ``_target_`` of a handler config, following one ``@id`` reference."""
    if isinstance(handler, str) and handler.startswith("@"):
        handler = parser[handler[1:]]
    return str(handler["_target_"]) if isinstance(handler, dict) else str(handler)


def handler_names(parser: ConfigParser) -> list[str]:
    """The ``_target_`` of every train, validate and resume handler of the bundle, in config order, once each."""
    names = [handler_name(parser, h) for key in ("train#handlers", "validate#handlers", "resume_handlers")
             for h in parser[key]]
    return list(dict.fromkeys(name for name in names if name != "ValidationHandler"))


def prepared(parser: ConfigParser) -> Callable[[], None]:
    """Parse the bundle (caching its datasets) and run its ``initialize``; returns its ``run``."""
    parser.get_parsed_content("initialize")
    parser.get_parsed_content("train#dataset"), parser.get_parsed_content("validate#dataset")
    return lambda: parser.get_parsed_content("run")


def bare_loop(parser: ConfigParser) -> Callable[[], None]:
    """The same work as the bundle's ``run`` in plain PyTorch, built from the same parsed config."""
    parser.get_parsed_content("initialize")
    device, epochs = parser.get_parsed_content("device"), parser.get_parsed_content("epochs")
    network, loss_fn = parser.get_parsed_content("network"), parser.get_parsed_content("loss")
    optimizer, scheduler = parser.get_parsed_content("optimizer"), parser.get_parsed_content("lr_scheduler")
    train_loader = parser.get_parsed_content("train#dataloader")
    val_loader = parser.get_parsed_content("validate#dataloader")
    post = parser.get_parsed_content("validate#postprocessing")
    metrics = [handler.metric_fn for handler in (*parser.get_parsed_content("validate#key_metric").values(),
                                                 *parser.get_parsed_content("validate#additional_metrics").values())]

    def run() -> None:
        for _ in range(epochs):
            network.train()
            for batch in train_loader:
                images, labels = batch["image"].to(device), batch["label"].to(device)
                optimizer.zero_grad(set_to_none=True)
                loss_fn(network(images), labels).backward()
                optimizer.step()
            scheduler.step()
            network.eval()
            with torch.no_grad():
                for batch in val_loader:
                    batch["image"], batch["label"] = batch["image"].to(device), batch["label"].to(device)
                    batch["pred"] = network(batch["image"])
                    items = [post(item) for item in decollate_batch(batch)]
                    for metric in metrics:
                        metric([i["pred"] for i in items], [i["label"] for i in items])
            for metric in metrics:
                metric.aggregate()
                metric.reset()

    return run


def timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--bundle", default="nerve_ultrasound_segmentation")
    args.add_argument("--epochs", type=int, default=4)
    args.add_argument("--repeats", type=int, default=2, help="bundle/bare pairs; the best of each is reported")
    args.add_argument("--set", nargs=2, action="append", default=[], metavar=("ID", "JSON"),
                      help="a config override of both runs, e.g. --set batch_size 16")
    args.add_argument("--no_ablation", action="store_true", help="skip the per-handler runs")
    opts = args.parse_args()
    override = {key: json.loads(value) for key, value in opts.set}
    layout = ConfigParser.load_config_file(os.path.join(REPO, "bundles", opts.bundle, "configs", "train.json"))["layout"]
    with tempfile.TemporaryDirectory() as tmp:
        data = ensure_demo(layout, os.path.join(tmp, "data"))

        def run_once(kind: str, drop: str | None = None) -> tuple[float, dict]:
            out = tempfile.mkdtemp(dir=tmp)
            parser = parser_for(opts.bundle, data, out, opts.epochs, override, drop)
            run = bare_loop(parser) if kind == "bare" else prepared(parser)
            seconds = timed(run)
            return seconds / opts.epochs, parser.get_parsed_content("network").state_dict()

        bundle_times, bare_times = [], []
        for _ in range(opts.repeats):  # interleaved, so that a load change on the machine hits both
            seconds, bundle_weights = run_once("bundle")
            bundle_times.append(seconds)
            seconds, bare_weights = run_once("bare")
            bare_times.append(seconds)
        difference = max((bundle_weights[k] - bare_weights[k]).abs().max().item() for k in bare_weights)
        bundle, bare = min(bundle_times), min(bare_times)
        print(f"{opts.bundle}, {opts.epochs} epochs, {torch.get_num_threads()} threads, best of {opts.repeats}:")
        print(f"  bundle (train.json)   {bundle:7.2f} s/epoch")
        print(f"  bare PyTorch loop     {bare:7.2f} s/epoch")
        print(f"  ratio bundle / bare   {bundle / bare:7.3f}   (goal <= 1.10)")
        print(f"  largest weight difference after training: {difference:.3g}")
        if not opts.no_ablation:
            print("  without one handler (s/epoch, saving against the full bundle):")
            for name in handler_names(parser_for(opts.bundle, data, tmp, opts.epochs, override)):
                seconds, weights = run_once("bundle", drop=name)
                same = all(torch.equal(weights[k], bundle_weights[k]) for k in weights)
                print(f"    {name:52s} {seconds:7.2f}  {bundle - seconds:+6.2f}  "
                      f"{'same weights' if same else 'other weights: it changes the training'}")
        print(json.dumps({"bundle_s_per_epoch": bundle, "bare_s_per_epoch": bare, "ratio": bundle / bare}))


if __name__ == "__main__":
    sys.exit(main())
