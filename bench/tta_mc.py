"""Cost of test-time augmentation with Monte-Carlo dropout: ``TTAMCDropoutInferer`` against the naive double loop.

For the BraTS bundle's ResUNet (2D, 64x64, 4 channels, the whole image) and a small 3D ResUNet (a 48x48x24
volume through ``SlidingWindowInferer`` with 32x32x24 windows), both with dropout 0.1 everywhere ("all", the
bundle's net) and only in the decoder ("decoder"), with the five augmentations of the bundle's ``tta.json``
(identity, two in-plane flips, in-plane rotations by +-0.1 rad) and T samples per augmentation, it times in
one run:

- ``naive``: for each augmentation, for each sample, one stochastic pass of the augmented input (through the
  sliding window in 3D) with only dropout on, the probabilities inverted onto the input grid and the five
  maps accumulated from them (the unit);
- ``inferer``: ``TTAMCDropoutInferer(T, augmentations)`` with its tuned chunk and deterministic prefix,

as interleaved medians after a warm-up call (the inferer's first call tunes the chunk and verifies the split).

Usage::

    python bench/tta_mc.py [--samples 20] [--repeats 3] [--threads N] [--cpu-time]
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.nn as nn
from mc_dropout import first_call_seconds, median_seconds, parse_arguments
from monai.inferers import Inferer, SlidingWindowInferer

from monai_seg.inferers import (
    AffineAugmentation,
    FlipAugmentation,
    IdentityAugmentation,
    InvertibleAugmentation,
    TTAMCDropoutInferer,
    mc_dropout_mode,
)
from monai_seg.networks import ResUNet


def bundle_augmentations(spatial_dims: int) -> list[InvertibleAugmentation]:
    """The augmentations of ``bundles/brats_mri_uncertainty/configs/tta.json``; in-plane = the first two axes."""
    turn = (lambda a: a) if spatial_dims == 2 else (lambda a: (0.0, 0.0, a))
    return [IdentityAugmentation(), FlipAugmentation(0), FlipAugmentation(1),
            AffineAugmentation(rotate=turn(0.1)), AffineAugmentation(rotate=turn(-0.1))]


def cases() -> list[tuple[str, str, Callable[[], nn.Module], tuple[int, ...], Inferer | None]]:
    """(name, dropout location, builder, input shape, inner inferer)."""
    out = []
    for location in ("all", "decoder"):
        out.append(("ResUNet 2D (BraTS)", location, lambda loc=location: ResUNet(2, 4, 1, dropout_location=loc),
                    (1, 4, 64, 64), None))
    for location in ("all", "decoder"):
        out.append(("ResUNet 3D, windows", location,
                    lambda loc=location: ResUNet(3, 4, 1, channels=(8, 16, 32), blocks=(1, 1, 1),
                                                 dropout_location=loc),
                    (1, 4, 48, 48, 24), SlidingWindowInferer((32, 32, 24), sw_batch_size=4, overlap=0.25)))
    return out


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p))


def naive_double_loop(
    net: nn.Module, x: torch.Tensor, augmentations: list[InvertibleAugmentation], t: int, inner: Inferer | None
) -> torch.Tensor:
    """The five default maps by the double loop over augmentations and samples, one full pass per sample."""
    totals = {}
    with mc_dropout_mode(net):
        for a in augmentations:
            xa = a(x)
            p_sum = h_sum = 0.0
            for _ in range(t):
                logits = net(xa) if inner is None else inner(xa, net)
                p = a.inverse(logits.sigmoid()).double()
                p_sum, h_sum = p_sum + p, h_sum + binary_entropy(p)
            mean = p_sum / t
            for key, value in (("p", mean), ("p2", mean.square()), ("h", h_sum / t), ("hm", binary_entropy(mean))):
                totals[key] = totals.get(key, 0.0) + value / len(augmentations)
    mean = totals["p"]
    return torch.cat([mean, binary_entropy(mean), totals["hm"] - totals["h"], totals["h"],
                      (totals["p2"] - mean.square()).clamp_min(0).sqrt()], dim=1)


def main() -> None:
    args, clock = parse_arguments(__doc__.split("\n")[0], repeats=3)
    t = args.samples
    print(
        f"T={t} per augmentation, A=5, CPU threads={torch.get_num_threads()} of {os.cpu_count()}, load average "
        f"{os.getloadavg()[0]:.1f}, torch {torch.__version__}; {'CPU' if args.cpu_time else 'wall'} time, "
        f"medians of {args.repeats}\n"
    )
    header = "| net | input | dropout | naive (s) | inferer (s) | inferer / naive | chunk | 1st call / naive |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for name, location, build, shape, inner in cases():
        torch.manual_seed(0)
        net = build().eval()
        x = torch.randn(shape)
        augmentations = bundle_augmentations(len(shape) - 2)
        inferer = TTAMCDropoutInferer(t, augmentations, inner=inner, seed=0)
        first = first_call_seconds(inferer, x, net, clock)
        seconds = median_seconds(
            {"naive": lambda: naive_double_loop(net, x, augmentations, t, inner), "inferer": lambda: inferer(x, net)},
            args.repeats,
            clock,
        )
        chunk = max(inferer.tuned_sample_batch(net).values())
        split = "" if inferer.prefix_split(net) is not None else ", no split"
        size = "x".join(map(str, shape[2:])) + f" {shape[1]}ch"
        print(
            f"| {name} | {size} | {location} | {seconds['naive']:.2f} | {seconds['inferer']:.2f} | "
            f"{seconds['inferer'] / seconds['naive']:.2f} | {chunk}{split} | {first / seconds['naive']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
