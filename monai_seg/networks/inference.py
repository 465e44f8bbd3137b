"""Inference-only versions of the monai-seg nets: BatchNorm folded into the convolutions, cheaper layers.

:func:`optimize_for_inference` returns a copy of a trained net that computes the same function in
eval mode (up to float rounding) with fewer passes over memory, which is what the nets' CPU time
goes to (docs/benchmarks.md): every BatchNorm after a convolution is folded into it, dropout
layers are dropped, activations run in place, a :class:`~monai_seg.networks.blocks.InceptionBlock`
folds its output normalisation into its four branches and uses a separable max-pool, a
:class:`~monai_seg.networks.blocks.ScaledResidualSkip` becomes one convolution and an activation,
and a decoder level never builds its upsampled and concatenated input. The original net is not
changed, so its weights keys, ``ckpt_export`` and MONAI Label keep working.
:class:`EvalOptimized` puts the copy behind the plain net in a bundle.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.networks.blocks import ADN, Convolution
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd
from torch.nn.utils.fusion import fuse_conv_bn_weights

from monai_seg.networks.blocks import DecoderLevel, InceptionBlock, ScaledResidualSkip

__all__ = [
    "EvalOptimized",
    "FusedDecoderLevel",
    "FusedInceptionBlock",
    "FusedScaledResidualSkip",
    "max_pool3",
    "optimize_for_inference",
]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED_CONVS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def max_pool3(x: torch.Tensor) -> torch.Tensor:
    """3-wide max-pool with stride 1 and padding 1 along every spatial axis, as separable maxima.

    Equal to ``max_pool{N}d(x, kernel_size=3, stride=1, padding=1)`` bit for bit, without the
    pooling indices PyTorch's CPU kernel computes and writes even in inference.

    Shapes: (B, C, *spatial) -> (B, C, *spatial).
    """
    for dim in range(2, x.dim()):
        n = x.shape[dim]
        if n < 2:
            continue
        out = torch.empty_like(x)
        head, tail = out.narrow(dim, 0, n - 1), out.narrow(dim, 1, n - 1)
        torch.maximum(x.narrow(dim, 0, n - 1), x.narrow(dim, 1, n - 1), out=tail)  # out[i] = max(x[i-1], x[i])
        out.narrow(dim, 0, 1).copy_(x.narrow(dim, 0, 1))
        torch.maximum(head, x.narrow(dim, 1, n - 1), out=head)  # out[i] = max(out[i], x[i+1])
        x = out
    return x


def _inplace(act: nn.Module) -> nn.Module:
    """A copy of ``act`` computing in place where the activation supports it."""
    act = copy.deepcopy(act)
    if hasattr(act, "inplace"):
        act.inplace = True
    return act


@torch.no_grad()
def _fold_bn_(conv: nn.Module, bn: _BatchNorm, first: int = 0, count: int | None = None) -> None:
    """Fold channels ``[first, first + count)`` of eval-mode ``bn`` into the first ``count`` output channels of ``conv``.

    ``count`` defaults to all of ``bn``'s channels; ``conv`` changes in place.
    """
    count = bn.num_features - first if count is None else count
    bn_channels, conv_channels = slice(first, first + count), slice(0, count)
    transpose = isinstance(conv, nn.modules.conv._ConvTransposeNd)  # its weight is (in, out, *kernel)
    weights = conv.weight[:, conv_channels] if transpose else conv.weight[conv_channels]

    def part(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[bn_channels]

    if conv.bias is None:
        conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype, device=conv.weight.device))
    weight, bias = fuse_conv_bn_weights(
        weights, conv.bias[conv_channels], part(bn.running_mean), part(bn.running_var), bn.eps, part(bn.weight),
        part(bn.bias), transpose=transpose
    )
    weights.copy_(weight)
    conv.bias[conv_channels] = bias


def _foldable(bn: nn.Module) -> bool:
    return isinstance(bn, _BatchNorm) and bn.track_running_stats and bn.running_mean is not None


def _fuse_convolution(block: Convolution) -> nn.Module:
    """``Convolution`` (conv then ADN) as conv with the leading BatchNorm folded in, then the activation.

    Returns the bare convolution when there is no activation, and the block unchanged when it is
    not conv, BatchNorm (or none), dropout (dropped), activation, in that order.
    """
    conv = block.conv
    adn = getattr(block, "adn", None)
    if not (isinstance(conv, _CONVS) or isinstance(conv, _TRANSPOSED_CONVS) and conv.groups == 1):
        return block
    layers: list[nn.Module] = [copy.deepcopy(conv)]
    for name, layer in (adn.named_children() if isinstance(adn, ADN) else []):
        if name == "N":
            if len(layers) > 1 or not _foldable(layer):
                return block
            _fold_bn_(layers[0], layer)
        elif name == "A":
            layers.append(_inplace(layer))
        elif name != "D":
            return block
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


def _end_conv(branch: nn.Sequential) -> nn.Module:
    """The last convolution of a fused factorised inception branch (conv-only in the original)."""
    if not isinstance(branch[-1], _CONVS):
        raise ValueError(f"an inception branch must end with a plain convolution, got {branch[-1]}.")
    return branch[-1]


class FusedInceptionBlock(nn.Module):
    """Eval-only :class:`~monai_seg.networks.blocks.InceptionBlock`: same output, fewer passes over memory.

    The block's output BatchNorm is per channel, so it folds into the four convolutions that end
    the branches (the first ``d/4`` output channels of the shared 1x1 reduction, the last
    factorised convolution of the 3- and 5-branches, the pooling branch's 1x1 convolution); the
    inner conv-norm-act layers fold their own BatchNorm; activations run in place and the max-pool
    is :func:`max_pool3`.

    Args:
        block: a trained block; it is copied, not changed.

    Shapes: (B, in_channels, *spatial) -> (B, out_channels, *spatial).
    """

    def __init__(self, block: InceptionBlock) -> None:
        super().__init__()
        if not _foldable(block.norm):
            raise ValueError(f"FusedInceptionBlock needs an InceptionBlock with BatchNorm, got {block.norm}.")
        self.splits = list(block.splits)
        self.reduce = copy.deepcopy(block.reduce)
        self.branch3 = nn.Sequential(*(_fuse_convolution(layer) for layer in block.branch3))
        self.branch5 = nn.Sequential(*(_fuse_convolution(layer) for layer in block.branch5))
        self.pool_conv = copy.deepcopy(block.pool_conv)
        self.reduce_act = _inplace(block.reduce_act)
        self.act = _inplace(block.act)
        bounds = [0, self.splits[0], self.splits[0] + _end_conv(self.branch3).out_channels]
        bounds += [bounds[-1] + _end_conv(self.branch5).out_channels, block.norm.num_features]
        parts = (self.reduce, _end_conv(self.branch3), _end_conv(self.branch5), self.pool_conv)
        for conv, start, stop in zip(parts, bounds[:-1], bounds[1:]):
            _fold_bn_(conv, block.norm, start, stop - start)

    def merge(self, reduced: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """The block's output from its 1x1 reduction ``reduced`` and its pooling branch ``pooled``."""
        mid3, mid5 = torch.split(self.reduce_act(reduced[:, self.splits[0] :]), self.splits[1:], dim=1)
        out = torch.cat([reduced[:, : self.splits[0]], self.branch3(mid3), self.branch5(mid5), pooled], dim=1)
        return self.act(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merge(self.reduce(x), self.pool_conv(max_pool3(x)))


class FusedScaledResidualSkip(nn.Module):
    """Eval-only :class:`~monai_seg.networks.blocks.ScaledResidualSkip`: ``act(conv(x))``, one 1x1 convolution.

    ``x + scale * norm(conv(x))`` is affine in ``x`` per pixel, so the identity, the scale and the
    BatchNorm fold into the convolution's weights.

    Shapes: (B, channels, *spatial) -> (B, channels, *spatial).
    """

    def __init__(self, block: ScaledResidualSkip) -> None:
        super().__init__()
        self.conv = _fuse_convolution(block.conv)
        if not isinstance(self.conv, _CONVS):
            raise ValueError(f"FusedScaledResidualSkip needs conv(-BatchNorm) without activation, got {block.conv}.")
        with torch.no_grad():
            self.conv.weight.mul_(block.scale)
            self.conv.bias.mul_(block.scale)
            eye = torch.eye(self.conv.out_channels, dtype=self.conv.weight.dtype, device=self.conv.weight.device)
            self.conv.weight += eye.reshape(self.conv.weight.shape)
        self.act = _inplace(block.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


def _nearest_x2(up: nn.Module) -> bool:
    """Whether ``up`` is exactly a nearest-neighbour x2 upsampling (e.g. MONAI's non-trainable ``UpSample``)."""
    layers = [m for m in up.modules() if not isinstance(m, nn.Sequential)]
    if len(layers) != 1 or not isinstance(layers[0], nn.Upsample):
        return False
    layer = layers[0]
    scales = layer.scale_factor if isinstance(layer.scale_factor, tuple) else (layer.scale_factor,)
    return layer.mode == "nearest" and layer.size is None and all(float(f) == 2.0 for f in scales)


def _add_nearest_x2_(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``out += nearest_x2(y)`` in place, without building the upsampled tensor.

    Shapes: out (B, C, *2 x spatial), y (B, C, *spatial).
    """
    if not out.is_contiguous():
        return out.add_(F.interpolate(y, scale_factor=2, mode="nearest"))
    pairs = [n for size in y.shape[2:] for n in (size, 2)]
    ones = [n for size in y.shape[2:] for n in (size, 1)]
    out.view(*out.shape[:2], *pairs).add_(y.reshape(*y.shape[:2], *ones))
    return out


def _max_pool2_padded(x: torch.Tensor) -> torch.Tensor:
    """2-wide max-pool, stride 1, padding 1 along every spatial axis: ``m[j] = max(x[j - 1], x[j])``, size n + 1.

    Equal to ``max_pool{N}d(x, 2, 1, 1)``, computed as in :func:`max_pool3`.
    """
    for dim in range(2, x.dim()):
        n = x.shape[dim]
        shape = list(x.shape)
        shape[dim] = n + 1
        out = x.new_empty(shape)
        torch.maximum(x.narrow(dim, 0, n - 1), x.narrow(dim, 1, n - 1), out=out.narrow(dim, 1, n - 1))
        out.narrow(dim, 0, 1).copy_(x.narrow(dim, 0, 1))
        out.narrow(dim, n, 1).copy_(x.narrow(dim, n - 1, 1))
        x = out
    return x


class FusedDecoderLevel(nn.Module):
    """Eval-only :class:`~monai_seg.networks.blocks.DecoderLevel` with nearest x2 upsampling and an inception block.

    ``inception(cat([skip_block(skip), up(x)]))`` without building the upsampled or concatenated
    tensors: both 1x1 convolutions on the concatenation (the block's reduction and its pooling
    branch's convolution) split into a part on the skip and a part on ``x``. The part on ``x``
    runs at ``x``'s resolution and is upsampled afterwards (a 1x1 convolution commutes with
    nearest upsampling); for the pooling branch, the 3-wide max-pool of a nearest x2 upsampling is
    the nearest x2 upsampling, shifted by one, of a 2-wide padded max-pool.

    Args:
        level: a trained decoder level whose ``up`` is a nearest x2 upsampling and whose ``block``
            is an :class:`~monai_seg.networks.blocks.InceptionBlock` with BatchNorm, then dropout
            or identity layers; it is copied, not changed.

    Shapes: x (B, C_deep, *spatial / 2), skip (B, C_skip, *spatial) -> (B, C_out, *spatial).
    """

    def __init__(self, level: DecoderLevel) -> None:
        super().__init__()
        if not _fusable_level(level):
            raise ValueError("FusedDecoderLevel needs nearest x2 upsampling and an InceptionBlock with BatchNorm.")
        self.skip_block = _replace(copy.deepcopy(level.skip_block))
        self.block = FusedInceptionBlock(level.block[0])

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        skip = self.skip_block(skip)
        c = skip.shape[1]
        conv = (F.conv1d, F.conv2d, F.conv3d)[x.dim() - 3]
        reduce, pool_conv = self.block.reduce, self.block.pool_conv
        reduced = _add_nearest_x2_(conv(skip, reduce.weight[:, :c], reduce.bias), conv(x, reduce.weight[:, c:]))
        pooled = conv(max_pool3(skip), pool_conv.weight[:, :c], pool_conv.bias)
        deep = F.interpolate(conv(_max_pool2_padded(x), pool_conv.weight[:, c:]), scale_factor=2, mode="nearest")
        for dim in range(2, deep.dim()):  # pool(up(x))[k] = up(m)[k + 1]
            deep = deep.narrow(dim, 1, deep.shape[dim] - 2)
        return self.block.merge(reduced, pooled + deep)


def _fusable_level(level: nn.Module) -> bool:
    if not isinstance(level, DecoderLevel) or not _nearest_x2(level.up) or not isinstance(level.block, nn.Sequential):
        return False
    first, rest = level.block[0], list(level.block)[1:]
    return (
        isinstance(first, InceptionBlock)
        and _foldable(first.norm)
        and all(isinstance(m, (_DropoutNd, nn.Identity)) for m in rest)
    )


def _replace(module: nn.Module) -> nn.Module:
    """``module`` with its known layers replaced by their inference versions, recursively, in place."""
    if _fusable_level(module):
        return FusedDecoderLevel(module)
    if isinstance(module, InceptionBlock) and _foldable(module.norm):
        return FusedInceptionBlock(module)
    if isinstance(module, ScaledResidualSkip) and isinstance(_fuse_convolution(module.conv), _CONVS):
        return FusedScaledResidualSkip(module)
    fused = _fuse_convolution(module) if isinstance(module, Convolution) else module
    if fused is not module:
        return fused
    if isinstance(module, _DropoutNd):
        return nn.Identity()
    for name, child in module.named_children():
        setattr(module, name, _replace(child))
    return module


def optimize_for_inference(network: nn.Module) -> nn.Module:
    """An eval-mode copy of ``network`` for fast inference; ``network`` itself is not changed.

    Folds the BatchNorm of every MONAI :class:`~monai.networks.blocks.Convolution` (conv, norm,
    dropout, act) into its convolution, drops dropout layers, runs activations in place and
    replaces :class:`~monai_seg.networks.blocks.InceptionBlock`,
    :class:`~monai_seg.networks.blocks.ScaledResidualSkip` and inception
    :class:`~monai_seg.networks.blocks.DecoderLevel` modules with :class:`FusedInceptionBlock`,
    :class:`FusedScaledResidualSkip` and :class:`FusedDecoderLevel`. Layers it does not know are
    kept as they are, so any net works; the outputs equal the eval-mode outputs of ``network`` up
    to float rounding (about 1e-7 on TwoHeadUNet's logits).

    The copy is for inference only: it has no BatchNorm to train and no dropout for Monte-Carlo
    sampling, and its ``state_dict`` keys differ; load the weights into ``network`` first.

    Args:
        network: a trained net.

    Returns:
        the optimised copy, in eval mode, with gradients disabled.
    """
    fused = _replace(copy.deepcopy(network).eval())
    return fused.requires_grad_(False).eval()


class EvalOptimized(nn.Module):
    """Wrap a net so that its eval-mode forward runs :func:`optimize_for_inference`'s copy, in chunks.

    The wrapped ``network`` stays the module to load weights into (MONAI's ``CheckpointLoader``
    with ``load_dict={"model": network}``), to train, export and serve; the optimised copy is built
    at the first eval-mode forward and rebuilt whenever a parameter or buffer of ``network`` has
    changed since (loaded weights, a move to another device). The plain ``network`` runs instead
    when it is in training mode, when any of its modules is (e.g. dropout switched on by
    :class:`monai_seg.inferers.MCDropoutInferer`) or when gradients are enabled.

    Args:
        network: the net, e.g. the bundle's ``network_def``.
        chunk: samples per forward pass of the optimised copy; a larger batch is split into chunks
            and the outputs concatenated. On CPU a net's full-resolution activations for a whole
            batch of 32 overflow the caches: the optimised TwoHeadUNet at 112x80 takes 1.5x longer per
            image in a batch of 32 than in chunks of 4 to 8 (docs/benchmarks.md). ``0`` runs the
            whole batch.

    Shapes: as ``network``.
    """

    def __init__(self, network: nn.Module, chunk: int = 8) -> None:
        super().__init__()
        if chunk < 0:
            raise ValueError(f"chunk must be >= 0 (0: no chunking), got {chunk}.")
        self.network = network
        self.chunk = chunk
        self._optimized: list[nn.Module] = []  # a list keeps the copy out of state_dict and .to()
        self._key: tuple = ()

    def _state_key(self) -> tuple:
        # a tensor's _version counts its in-place changes (load_state_dict copies in place); its
        # data_ptr changes when the module moves
        return tuple((t.data_ptr(), t._version) for t in (*self.network.parameters(), *self.network.buffers()))

    def optimized(self) -> nn.Module:
        """The optimised copy of the current weights (built or rebuilt when they have changed)."""
        key = self._state_key()
        if not self._optimized or key != self._key:
            self._optimized = [optimize_for_inference(self.network)]
            self._key = key
        return self._optimized[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or any(m.training for m in self.network.modules()):
            return self.network(x)
        net = self.optimized()
        # a MetaTensor would send each of the net's operations through its metadata handling
        # (about 10% of the TwoHeadUNet's CPU time): run on the plain tensor, then attach the
        # metadata as MONAI's operations would have passed it on
        data = x.as_tensor() if isinstance(x, MetaTensor) else x
        if self.chunk == 0 or data.shape[0] <= self.chunk:
            out = net(data)
        else:
            out = torch.cat([net(part) for part in torch.split(data, self.chunk)])
        if not isinstance(x, MetaTensor):
            return out
        out = MetaTensor(out)
        out.is_batch = x.is_batch
        out.copy_meta_from(x, copy_attr=not x.is_batch)
        return out
