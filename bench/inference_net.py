"""The nerve bundle's net alone: the plain TwoHeadUNet against ``EvalOptimized`` in chunks, plain and MetaTensor input.

Every variant runs on the same batch (default 32 images of 112x80, random weights, eval mode,
``torch.no_grad``); the rows are interleaved and rotated over ``--repeats`` rounds and the table
gives each variant's best round in ms per image (wall clock and process CPU time) and its ratio to
the plain net's, measured in the same run. ``meta`` rows feed the batch as a ``monai.data.MetaTensor``,
as the bundle's evaluator does; the last row runs the optimised copy on the MetaTensor chunks
directly, so that each of its operations goes through MONAI's metadata dispatch (what
``EvalOptimized`` did before it ran the net on the plain tensor). ``--norm batch`` adds the same two
nets with another normalisation (``network_def#norm``): BatchNorm folds into the convolutions of the
optimised copy, the bundle's instance normalisation does not.

Usage::

    python bench/inference_net.py [--batch_size 32] [--chunks 0 4 8 16] [--repeats 3] [--threads N] [--norm batch]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor

CONFIG = os.path.join(os.path.dirname(__file__), "..", "bundles", "nerve_ultrasound_segmentation", "configs",
                      "inference.json")


def timed(run: Callable[[], object], calls: int) -> tuple[float, float]:
    """Wall and process CPU seconds per call of ``run`` over ``calls`` calls."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        run()
    return (time.perf_counter() - start) / calls, (time.process_time() - cpu) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--chunks", type=int, nargs="+", default=[0, 4, 8, 16], help="EvalOptimized chunk sizes")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best is reported")
    parser.add_argument("--calls", type=int, default=3, help="forward passes per variant and round")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--norm", default=None, help="also time the nets with this network_def#norm, e.g. batch")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = ConfigParser()
    config.read_config(CONFIG)
    torch.manual_seed(0)
    plain = config.get_parsed_content("network_def").eval()
    wrapped = config.get_parsed_content("inference_network").eval()
    assert wrapped.network is plain
    x = torch.randn(args.batch_size, 1, *config["spatial_size"])
    meta = MetaTensor(x.clone())
    meta.is_batch = True

    def optimised(chunk: int, batch: torch.Tensor) -> Callable[[], object]:
        def run() -> object:
            wrapped.chunk = chunk
            return wrapped(batch)
        return run

    variants = {"plain net, tensor": lambda: plain(x), "plain net, meta": lambda: plain(meta)}
    for chunk in args.chunks:
        variants[f"EvalOptimized chunk {chunk}, tensor"] = optimised(chunk, x)
        variants[f"EvalOptimized chunk {chunk}, meta"] = optimised(chunk, meta)

    with torch.no_grad():
        wrapped(x)  # builds the optimised copy
    copy = wrapped.optimized()
    variants["optimised copy chunk 8, meta inside the net"] = (  # EvalOptimized before it unwrapped MetaTensors
        lambda: torch.cat([copy(part) for part in torch.split(meta, 8)]))
    if args.norm:
        config["network_def#norm"] = args.norm
        other = config.get_parsed_content("inference_network", lazy=False).eval()
        variants[f"plain net, {args.norm} norm, tensor"] = lambda: other.network(x)
        variants[f"EvalOptimized chunk 8, {args.norm} norm, tensor"] = lambda: other(x)

    best: dict[str, tuple[float, float]] = {}
    names = list(variants)
    with torch.no_grad():
        for run in variants.values():
            run()  # warm-up (builds the optimised copy)
        for round_ in range(args.repeats):
            for name in names[round_ % len(names):] + names[: round_ % len(names)]:
                wall, cpu = timed(variants[name], args.calls)
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, cpu)

    per_image = {k: (w * 1000 / args.batch_size, c * 1000 / args.batch_size) for k, (w, c) in best.items()}
    reference = per_image["plain net, tensor"][0]
    print(f"batch {args.batch_size} at {tuple(x.shape[2:])}, torch threads {torch.get_num_threads()}, "
          f"best of {args.repeats} rounds")
    print("| variant | ms / image | CPU ms / image | / plain net |")
    print("|---|---|---|---|")
    for name, (wall, cpu) in per_image.items():
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {wall / reference:.2f} |")


if __name__ == "__main__":
    main()
