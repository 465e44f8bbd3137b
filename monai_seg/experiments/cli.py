"""The command line of the experiments: ``python -m monai_seg.experiments <name> [--quick] [--dataset_dir DIR]
[--bundle DIR] [--set KEY=VALUE ...]``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from monai_seg.experiments import EXPERIMENTS, run_experiment
from monai_seg.experiments.runner import markdown_table

SETTINGS_HELP = {
    "num_folds": (int, None, "cross_validation: number of folds (5; quick 3)"),
    "model": (str, None, "cross_validation: the net, one of the model_comparison names (unet)"),
    "models": (str, "+", "model_comparison: nets to compare (all five)"),
    "std": (float, None, "noise: standard deviation in raw image units (5000, for 16-bit images)"),
    "conditions": (str, "+", "noise: where the noise goes, of none both train val (all)"),
    "sizes": (int, "+", "training_size: numbers of training images (5 10 15 20 25 45 65 85 105; quick 2 4)"),
    "samples": (int, "+", "uncertainty: Monte-Carlo samples T >= 1 (1 5 10 20 50; quick 1 4 8)"),
    "locations": (str, "+", "uncertainty: dropout placements, of everywhere decoder (both)"),
    "style": (str, None, "nerve_ablation: the generated data, speckle (the demo's) or fascicles (speckle)"),
    "rows": (str, "+", "nerve_ablation: the rows to run (all)"),
}


def _override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE parsed as JSON when it is JSON (``epochs=10``, ``spatial_size=[96,96]``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (``sys.argv[1:]`` when ``argv`` is None)."""
    parser = argparse.ArgumentParser(
        prog="python -m monai_seg.experiments",
        description="Run a seed study's experiment through its MONAI bundle; finished runs are not repeated.",
        epilog="experiments: " + "; ".join(f"{k}: {e.summary}" for k, e in EXPERIMENTS.items()),
    )
    parser.add_argument("name", choices=list(EXPERIMENTS))
    parser.add_argument("--quick", action="store_true", help="tiny demo data, nets and epochs (seconds a run)")
    parser.add_argument("--dataset_dir", help="your data in the bundle's layout (default: demo data)")
    parser.add_argument("--bundle", help="the bundle folder (default: the repository's bundle of the experiment)")
    parser.add_argument("--output_dir", help="default experiments/<name> (experiments/quick/<name> with --quick)")
    parser.add_argument("--set", dest="overrides", type=_override, action="append", default=[], metavar="KEY=VALUE",
                        help="bundle config override for every run, e.g. --set epochs=10 --set batch_size=16")
    parser.add_argument("--verbose", action="store_true", help="the bundles' own per-epoch logging")
    for name, (kind, nargs, text) in SETTINGS_HELP.items():
        parser.add_argument(f"--{name}", type=kind, nargs=nargs, help=text)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the experiment of the command line and print its table.

    Returns:
        the exit status: 0, or 2 for a setting the experiment does not take.
    """
    args = parse_args(argv)
    settings = {k: getattr(args, k) for k in SETTINGS_HELP if getattr(args, k) is not None}
    wrong = set(settings) - set(EXPERIMENTS[args.name].settings)
    if wrong:
        print(f"error: {args.name} does not take --{' --'.join(sorted(wrong))}", file=sys.stderr)
        return 2
    print(f"{args.name}: runs the bundle configs with MONAI's bundle API (their expressions run as code: "
          "use bundles you trust)", flush=True)
    start = time.perf_counter()
    rows = run_experiment(args.name, args.output_dir, args.bundle, args.dataset_dir, args.quick, dict(args.overrides),
                          args.verbose, lambda line: print(line, flush=True), **settings)
    print(markdown_table(rows), end="")
    print(f"done in {time.perf_counter() - start:.0f} s", flush=True)
    return 0
