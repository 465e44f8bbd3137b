"""Cost of T Monte-Carlo dropout samples, as a ratio to T single forward passes, in one run.

For MONAI's UNet and monai-seg's nets at the study input sizes, with dropout everywhere ("all") and,
for monai-seg's nets, only in the decoder ("decoder"), it times, as ratios to ``loop``:

- ``loop``: T stochastic forward passes of one sample each (naive MC dropout, the unit),
- ``eval``: T deterministic forward passes (dropout off: what the dropout layers themselves cost),
- ``batched``: one stochastic forward pass of the T samples as a batch of T,
- ``auto``: ``MCDropoutInferer(T, prefix_sampling=False)`` with its tuned chunk (whole-net sampling),
- ``prefix``: ``MCDropoutInferer(T)`` with deterministic-prefix sampling and its tuned chunk,

as interleaved medians after a warm-up call (the inferer's first call tunes the chunk and verifies the
split; that one-off cost is printed as ``1st call``). Goals: ``auto`` <= 1.0x the faster of loop and
batched; ``prefix`` <= 0.6x with decoder-only dropout.

Usage::

    python bench/mc_dropout.py [--samples 20] [--repeats 5] [--threads N] [--cpu-time]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn as nn
from monai.networks.nets import UNet

from monai_seg.inferers import MCDropoutInferer, mc_dropout_mode
from monai_seg.networks import R2UNet, ResUNet, TwoHeadUNet


def cases() -> list[tuple[str, str, Callable[[], nn.Module], tuple[int, ...]]]:
    """(net, dropout location, builder, input shape) at the study sizes."""
    unet = lambda: UNet(2, 1, 1, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=2, dropout=0.2)  # noqa: E731
    out = [("MONAI UNet", "all", unet, (1, 1, 96, 96))]
    for name, build, shape in (
        ("ResUNet", lambda loc: ResUNet(2, 4, 1, dropout_location=loc), (1, 4, 64, 64)),
        ("TwoHeadUNet", lambda loc: TwoHeadUNet(2, 1, 1, dropout_location=loc), (1, 1, 80, 112)),
        ("R2UNet", lambda loc: R2UNet(2, 1, 1, dropout_location=loc), (1, 1, 96, 96)),
    ):
        out += [(name, loc, lambda b=build, l=loc: b(l), shape) for loc in ("all", "decoder")]
    return out


def median_seconds(fns: dict[str, Callable[[], object]], repeats: int, clock: Callable[[], float]) -> dict[str, float]:
    """Median time of each function after one warm-up run; interleaved, in an order that rotates every
    repeat, so that load and cache effects hit all alike."""
    for fn in fns.values():
        fn()
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(repeats):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = clock()
            fns[name]()
            times[name].append(clock() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def first_call_seconds(inferer: MCDropoutInferer, x: torch.Tensor, net: nn.Module, clock: Callable[[], float]) -> float:
    start = clock()
    inferer(x, net)
    return clock() - start


def parse_arguments(description: str, repeats: int) -> tuple[argparse.Namespace, Callable[[], float]]:
    """The options of the Monte-Carlo benches (``--samples``, ``--repeats``, ``--threads``, ``--cpu-time``).

    Sets torch's threads; returns the options and the clock to time with.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--cpu-time", action="store_true", help="time process CPU instead of wall clock (for a shared machine)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, time.process_time if args.cpu_time else time.perf_counter


def main() -> None:
    args, clock = parse_arguments(__doc__.split("\n")[0], repeats=5)
    t = args.samples
    print(
        f"T={t}, CPU threads={torch.get_num_threads()} of {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, "
        f"torch {torch.__version__}; {'CPU' if args.cpu_time else 'wall'} time, medians of {args.repeats}, "
        "ratios to loop\n"
    )
    header = (
        "| net | input | dropout | loop (s) | eval | batched | auto (chunk) | auto / best | prefix (chunk) "
        "| 1st call auto / prefix |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for name, location, build, shape in cases():
        torch.manual_seed(0)
        net = build().eval()
        x = torch.randn(shape)
        auto = MCDropoutInferer(t, prefix_sampling=False, seed=0)
        prefix = MCDropoutInferer(t, seed=0)
        first_auto, first_prefix = (first_call_seconds(inf, x, net, clock) for inf in (auto, prefix))

        def forwards() -> None:
            with torch.no_grad():
                for _ in range(t):
                    net(x)

        def loop() -> None:
            with mc_dropout_mode(net):
                for _ in range(t):
                    net(x)

        def batched() -> None:
            with mc_dropout_mode(net):
                net(x.repeat(t, 1, 1, 1))

        seconds = median_seconds(
            {
                "eval": forwards,
                "loop": loop,
                "batched": batched,
                "auto": lambda: auto(x, net),
                "prefix": lambda: prefix(x, net),
            },
            args.repeats,
            clock,
        )
        r = {key: value / seconds["loop"] for key, value in seconds.items()}
        chunk, prefix_chunk = (next(iter(inf.tuned_sample_batch(net).values())) for inf in (auto, prefix))
        split = "" if prefix.prefix_split(net) is not None else ", no split"
        size = "x".join(map(str, shape[2:])) + f" {shape[1]}ch"
        print(
            f"| {name} | {size} | {location} | {seconds['loop']:.2f} | {r['eval']:.2f} | {r['batched']:.2f} | "
            f"{r['auto']:.2f} ({chunk}) | {r['auto'] / min(1.0, r['batched']):.2f} | "
            f"{r['prefix']:.2f} ({prefix_chunk}{split}) | "
            f"{first_auto / seconds['loop']:.2f} / {first_prefix / seconds['loop']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
