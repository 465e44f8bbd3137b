"""Throughput and FLOP efficiency of monai-seg's nets against MONAI's UNet, in one run.

For each study input size (96x96 1-channel, 64x64 4-channel, 80x112 1-channel) and each net, it
times an inference forward pass and a training step (forward, Dice loss, backward, Adam step),
counts their FLOPs with ``torch.utils.flop_counter``, and prints the achieved FLOP/s as a ratio
to MONAI ``UNet``'s in the same run and to a measured fp32 matmul ceiling.

Usage::

    python bench/nets.py [--batch 8] [--repeats 5] [--threads N] [--cpu-time]

``--cpu-time`` times with the process's CPU time instead of the wall clock: with ``--threads 1`` it
equals the wall time of an idle machine and stays meaningful while other jobs load the machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn as nn
from monai.losses import DiceLoss
from monai.networks.nets import UNet
from torch.utils.flop_counter import FlopCounterMode

from monai_seg.networks import R2UNet, ResUNet, TwoHeadUNet

SIZES = {"96x96 1ch": (1, (96, 96)), "64x64 4ch": (4, (64, 64)), "80x112 1ch": (1, (80, 112))}


def build_nets(in_channels: int) -> dict[str, nn.Module]:
    """MONAI's UNet (the model-zoo 5-level configuration) first, then the project's nets (defaults)."""
    return {
        "MONAI UNet": UNet(2, in_channels, 1, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2),
        "R2UNet": R2UNet(2, in_channels, 1),
        "ResUNet": ResUNet(2, in_channels, 1),
        "TwoHeadUNet": TwoHeadUNet(2, in_channels, 1),
    }


def median_seconds(fn: Callable[[], object], repeats: int, clock: Callable[[], float], warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def count_flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_ceiling(repeats: int, clock: Callable[[], float], n: int = 2048) -> float:
    """Achieved fp32 FLOP/s of an n x n matmul: the practical ceiling of this CPU."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / median_seconds(lambda: a @ b, repeats, clock)


def measure(net: nn.Module, x: torch.Tensor, repeats: int, clock: Callable[[], float]) -> dict[str, float]:
    loss_fn = DiceLoss(sigmoid=True)
    optimizer = torch.optim.Adam(net.parameters(), 1e-4)
    y = (torch.rand(x.shape[0], 1, *x.shape[2:]) > 0.5).float()

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(net(x)[:, :1], y).backward()
        optimizer.step()

    @torch.no_grad()
    def infer() -> None:
        net(x)

    net.train()
    train_flops, train_s = count_flops(train_step), median_seconds(train_step, repeats, clock)
    net.eval()
    infer_flops, infer_s = count_flops(infer), median_seconds(infer, repeats, clock)
    return {
        "params": sum(p.numel() for p in net.parameters()) / 1e6,
        "train_img_s": x.shape[0] / train_s,
        "train_gflop_s": train_flops / train_s / 1e9,
        "infer_img_s": x.shape[0] / infer_s,
        "infer_gflop_s": infer_flops / infer_s / 1e9,
        "gflop_img": infer_flops / x.shape[0] / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--cpu-time", action="store_true", help="time with process CPU time, not wall time")
    args = parser.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    ceiling = matmul_ceiling(args.repeats, clock) / 1e9
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{'CPU' if args.cpu_time else 'wall'} time, "
          f"fp32 matmul ceiling {ceiling:.1f} GFLOP/s\n")
    header = ("| size | net | params (M) | GFLOP/img (fwd) | train img/s | train GFLOP/s | train eff. vs UNet "
              "| train % of ceiling | infer img/s | infer GFLOP/s | infer eff. vs UNet |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for size_name, (in_channels, spatial) in SIZES.items():
        x = torch.randn(args.batch, in_channels, *spatial)
        reference = None
        for name, net in build_nets(in_channels).items():
            r = measure(net, x, args.repeats, clock)
            reference = reference or r
            print(f"| {size_name} | {name} | {r['params']:.2f} | {r['gflop_img']:.3f} | {r['train_img_s']:.1f} "
                  f"| {r['train_gflop_s']:.1f} | {r['train_gflop_s'] / reference['train_gflop_s']:.2f}x "
                  f"| {100 * r['train_gflop_s'] / ceiling:.0f}% | {r['infer_img_s']:.1f} | {r['infer_gflop_s']:.1f} "
                  f"| {r['infer_gflop_s'] / reference['infer_gflop_s']:.2f}x |")


if __name__ == "__main__":
    main()
