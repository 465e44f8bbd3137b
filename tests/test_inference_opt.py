"""optimize_for_inference / EvalOptimized: same outputs as the eval-mode nets, used by the nerve bundle's inference.

Tolerance: the optimised nets differ from the originals only by float rounding (BatchNorm folded into
the convolutions' weights, sums in another order): atol 1e-5 on logits of order 1 (measured <= 3e-7).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from unittest.mock import patch

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.networks.nets import BasicUNet, UNet

from monai_seg.data import make_demo, rle_decode
from monai_seg.inferers import MCDropoutInferer
from monai_seg.networks import (
    EvalOptimized,
    FusedDecoderLevel,
    FusedInceptionBlock,
    FusedScaledResidualSkip,
    R2UNet,
    ResUNet,
    TwoHeadUNet,
    max_pool3,
    optimize_for_inference,
)
from monai_seg.utils import reuse_freed_memory
from tests.bundle_utils import config_files, run_bundle

ATOL = 1e-5
SMALL_CHANNELS = [16, 32, 64, 128, 256]

# id, net, input shape (odd batch sizes); the last two have no BatchNorm to fold (instance norm)
CASES = [
    ("two_head_nerve", lambda: TwoHeadUNet(2, 1, 1, channels=SMALL_CHANNELS), (3, 1, 112, 80)),
    ("two_head_3d", lambda: TwoHeadUNet(3, 2, 2, channels=(16, 32, 48)), (1, 2, 8, 12, 4)),
    ("two_head_decoder_max", lambda: TwoHeadUNet(2, 1, 1, channels=(16, 32), presence_pool="max", presence_grid=1,
                                                 dropout_location="decoder"), (5, 1, 6, 10)),
    ("two_head_1d", lambda: TwoHeadUNet(1, 1, 1, channels=(16, 32)), (3, 1, 14)),
    ("r2unet", lambda: R2UNet(2, 1, 2, channels=(8, 16, 32)), (3, 1, 16, 12)),
    ("resunet", lambda: ResUNet(2, 4, 3, channels=(8, 16, 32), blocks=(1, 2, 2)), (3, 4, 16, 12)),
    ("monai_unet_batch", lambda: UNet(2, 1, 1, channels=(8, 16, 32), strides=(2, 2), num_res_units=2,
                                      norm="batch", dropout=0.2), (3, 1, 16, 12)),
    ("monai_basic_unet", lambda: BasicUNet(2, 1, 1, features=(8, 8, 16, 16, 32, 8)), (3, 1, 32, 32)),
    ("two_head_instance_norm", lambda: TwoHeadUNet(2, 1, 1, channels=(16, 32), norm="instance"), (3, 1, 8, 8)),
]


def trained_like(net: nn.Module, seed: int = 0) -> nn.Module:
    """``net`` in eval mode with BatchNorm statistics and affine parameters far from their initial values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                size = m.num_features
                m.running_mean.copy_(torch.rand(size, generator=generator) - 0.5)
                m.running_var.copy_(torch.rand(size, generator=generator) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                m.bias.copy_(torch.rand(size, generator=generator) * 0.4 - 0.2)
    return net.eval()


class TestOptimizeForInference:
    @pytest.mark.parametrize("make_net, shape", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
    def test_same_outputs(self, make_net, shape):
        net = trained_like(make_net())
        before = {k: v.clone() for k, v in net.state_dict().items()}
        layers = [type(m) for m in net.modules()]
        fast = optimize_for_inference(net)
        x = torch.randn(shape)
        with torch.no_grad():
            expected = net(x)
            out = fast(x)
        torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)
        assert not fast.training and not any(p.requires_grad for p in fast.parameters())
        kinds = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)
        assert not any(isinstance(m, kinds) for m in fast.modules())
        # the original net is untouched
        assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
        assert [type(m) for m in net.modules()] == layers

    def test_two_head_unet_blocks_are_replaced(self):
        net = trained_like(TwoHeadUNet(2, 1, 1, channels=(16, 32, 64)))
        fast = optimize_for_inference(net)
        assert isinstance(fast.encoder[0], FusedInceptionBlock)
        assert all(isinstance(level, FusedDecoderLevel) for level in fast.decoder)
        assert all(isinstance(level.skip_block, FusedScaledResidualSkip) for level in fast.decoder)
        x = torch.randn(3, 1, 16, 12).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            torch.testing.assert_close(fast(x), net(x), atol=ATOL, rtol=0)

    def test_training_mode_net_is_copied_in_eval_mode(self):
        net = trained_like(TwoHeadUNet(2, 1, 1, channels=(16, 32))).train()
        fast = optimize_for_inference(net)
        assert net.training
        x = torch.randn(3, 1, 8, 8)
        with torch.no_grad():
            torch.testing.assert_close(fast(x), net.eval()(x), atol=ATOL, rtol=0)

    @pytest.mark.parametrize("shape", [(2, 3, 9), (2, 3, 7, 5), (1, 2, 1, 4), (3, 1, 2, 2), (1, 2, 4, 3, 5)])
    def test_max_pool3_is_exact(self, shape):
        x = torch.randn(shape)
        x[0, 0].flatten()[0] = float("-inf")
        pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[x.dim() - 3]
        assert torch.equal(max_pool3(x), pool(x, 3, 1, 1))
        if x.dim() == 4:
            assert torch.equal(max_pool3(x.contiguous(memory_format=torch.channels_last)), pool(x, 3, 1, 1))


def meta_operations(run) -> int:
    """How many torch operations ``run()`` sends through ``MetaTensor.__torch_function__``."""
    calls = []
    original = MetaTensor.__torch_function__.__func__

    def counting(cls, func, types, args=(), kwargs=None):
        calls.append(func)
        return original(cls, func, types, args, kwargs)

    with patch.object(MetaTensor, "__torch_function__", classmethod(counting)):
        run()
    return len(calls)


class TestEvalOptimized:
    def net_and_input(self):
        torch.manual_seed(0)
        return trained_like(TwoHeadUNet(2, 1, 1, channels=(16, 32, 64), dropout=0.3)), torch.randn(5, 1, 16, 12)

    @pytest.mark.parametrize("chunk", [0, 1, 2, 4, 8])
    def test_chunks_give_the_eval_outputs(self, chunk):
        net, x = self.net_and_input()
        wrapped = EvalOptimized(net, chunk=chunk).eval()
        with torch.no_grad():
            torch.testing.assert_close(wrapped(x), net(x), atol=ATOL, rtol=0)
        with torch.inference_mode():
            torch.testing.assert_close(wrapped(x), net(x), atol=ATOL, rtol=0)
        assert list(wrapped.state_dict()) == ["network." + k for k in net.state_dict()]

    def test_follows_loaded_weights_and_devices(self):
        net, x = self.net_and_input()
        wrapped = EvalOptimized(net, chunk=2).eval()
        with torch.no_grad():
            first = wrapped(x)
            built = wrapped.optimized()
            wrapped(x)
            assert wrapped.optimized() is built  # cached while the weights stay the same
            other = trained_like(TwoHeadUNet(2, 1, 1, channels=(16, 32, 64), dropout=0.3), seed=1)
            net.load_state_dict(other.state_dict())  # what CheckpointLoader does at engine start
            torch.testing.assert_close(wrapped(x), other(x), atol=ATOL, rtol=0)
            assert not torch.allclose(wrapped(x), first)
            wrapped.to(torch.float64)
            assert wrapped(x.double()).dtype == torch.float64

    def test_plain_net_when_training_sampling_or_differentiating(self):
        net, x = self.net_and_input()
        wrapped = EvalOptimized(net, chunk=2)
        assert wrapped.training
        torch.manual_seed(1)
        out = wrapped(x)
        torch.manual_seed(1)
        torch.testing.assert_close(out, net(x))  # training mode: the plain net, its dropout and batch statistics
        out.sum().backward()
        assert net.encoder[0].reduce.weight.grad is not None
        wrapped.eval()
        assert wrapped(x).requires_grad  # gradients enabled: the plain net
        with torch.no_grad():
            # the inferer switches the plain net's dropout on and raises unless a dropout layer ran
            maps = MCDropoutInferer(num_samples=3, sample_batch=3, prefix_sampling=False)(x, wrapped)
        assert torch.isfinite(maps).all()

    def test_metatensor_batch_keeps_the_plain_nets_metadata(self):
        net, x = self.net_and_input()
        batch = MetaTensor(x, affine=torch.eye(4) * 2, meta={"filename_or_obj": "a.tif"})
        batch.is_batch = True
        batch.applied_operations = [{"class": "Resized"}]
        wrapped = EvalOptimized(net, chunk=2).eval()
        with torch.no_grad():
            out, expected = wrapped(batch), net(batch)
        assert isinstance(out, MetaTensor) and out.is_batch
        torch.testing.assert_close(out.as_tensor(), expected.as_tensor(), atol=ATOL, rtol=0)
        assert out.meta["filename_or_obj"] == expected.meta["filename_or_obj"] == "a.tif"
        assert torch.equal(out.affine, expected.affine)
        assert out.applied_operations == expected.applied_operations
        with torch.no_grad():  # no metadata handling inside the optimised net
            assert meta_operations(lambda: wrapped(batch)) < 10 < meta_operations(lambda: net(batch))

    def test_bad_chunk(self):
        with pytest.raises(ValueError, match="chunk"):
            EvalOptimized(nn.Identity(), chunk=-1)


def test_nerve_inference_uses_it_and_writes_the_same_submission(tmp_path):
    """The bundle's evaluator runs EvalOptimized; its submission equals the plain network's."""
    data = make_demo("nerve", str(tmp_path / "data"), num_subjects=1, images_per_subject=1, num_test=5)
    config = ConfigParser.load_config_file(config_files("nerve_ultrasound_segmentation", "inference.json")[0])
    net = trained_like(TwoHeadUNet(2, 1, 1, channels=SMALL_CHANNELS, norm=config["network_def"]["norm"]))
    with torch.no_grad():  # centre the logits: masks with both classes, many pixels near the threshold
        net.head[1].bias -= net(torch.randn(2, 1, 112, 80))[:, 0].median()
    torch.save(net.state_dict(), tmp_path / "model.pt")
    common = {"dataset_dir": data, "checkpoint": str(tmp_path / "model.pt"), "num_workers": 0, "batch_size": 3,
              "presence_threshold": 0.0, "min_pixels": 0, "network_def#channels": SMALL_CHANNELS}
    assert config["evaluator"]["network"] == "@inference_network"
    assert config["inference_network"]["_target_"] == "monai_seg.networks.EvalOptimized"
    run_bundle("nerve_ultrasound_segmentation", ["inference.json"], output_dir=str(tmp_path / "fast"), **common)
    run_bundle("nerve_ultrasound_segmentation", ["inference.json"], output_dir=str(tmp_path / "plain"),
               **{"evaluator#network": "@network"}, **common)
    rows = {}
    for name in ("fast", "plain"):
        with open(tmp_path / name / "submission.csv") as f:
            rows[name] = list(csv.reader(f))[1:]
    assert [r[0] for r in rows["fast"]] == [r[0] for r in rows["plain"]] == ["1", "2", "3", "4", "5"]
    fast = np.stack([rle_decode(r[1], (420, 580)) for r in rows["fast"]])
    plain = np.stack([rle_decode(r[1], (420, 580)) for r in rows["plain"]])
    assert plain.any() and not plain.all()
    # pixels whose probability is within float rounding of the threshold may flip: at most 1e-5 of them
    assert np.mean(fast != plain) <= 1e-5


MEMORY_REUSE = """
import os, resource
import torch
from monai_seg.utils import reuse_freed_memory
def faults_of_40mb_tensors():
    for _ in range(10):
        torch.ones(10 * 2**20)  # the first ones take their pages in either case
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.ones(10 * 2**20)  # 40 MiB allocated, written, freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
default = faults_of_40mb_tensors()
assert reuse_freed_memory()  # from here on, for the whole process
reuse = faults_of_40mb_tensors()
start = rss()
torch.ones(50 * 2**20)  # 200 MiB, written and freed: kept in the heap
kept = rss()
pid = os.fork()  # as a DataLoader starts its workers
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
print(default, reuse, kept - start, kept - rss())
"""


@pytest.fixture(scope="module")
def memory_reuse() -> dict[str, int]:
    """Page faults of repeated 40 MiB allocations before and after ``reuse_freed_memory()``, then the memory kept
    after freeing 200 MiB and the memory released by a fork, measured in a fresh process (the setting holds for
    the whole process, so it is measured once, default first)."""
    result = subprocess.run([sys.executable, "-c", MEMORY_REUSE], capture_output=True, text=True, check=True)
    return dict(zip(("default", "reuse", "kept", "released"), map(int, result.stdout.split())))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and /proc")
def test_reuse_freed_memory_saves_the_page_faults_of_repeated_allocations(memory_reuse):
    # by default glibc maps each 40 MiB block afresh (10,240 faults of 4 KiB each, measured 204,820 for
    # the 20); reused, the block is already mapped
    assert memory_reuse["reuse"] * 10 < memory_reuse["default"], memory_reuse


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and /proc")
def test_reuse_freed_memory_keeps_freed_memory_but_hands_it_back_before_a_fork(memory_reuse):
    # the freed 200 MiB stay resident until the fork, so that a forked worker does not share them copy-on-write
    assert memory_reuse["kept"] > 150 * 2**20 and memory_reuse["released"] > 150 * 2**20, memory_reuse


def test_reuse_freed_memory_reports_a_c_library_without_mallopt():
    with patch("ctypes.CDLL", side_effect=OSError("no libc")):
        assert reuse_freed_memory() is False
