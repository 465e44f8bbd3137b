"""Monte-Carlo dropout inference with per-pixel uncertainty maps (Gal & Ghahramani 2016).

:class:`MCDropoutInferer` is a :class:`monai.inferers.Inferer`: it runs ``num_samples`` stochastic forward
passes with only the dropout layers in train mode and returns one tensor with the mean probability first
and the uncertainty maps after it (see :func:`uncertainty_channels` for the layout). Entropies are in nats.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.inferers import Inferer
from monai.utils import convert_to_dst_type

from monai_seg.networks.inference import EvalOptimized
from monai_seg.inferers.prefix import (
    DEFAULT_DROPOUT_TYPES,
    PrefixSplit,
    active_dropout_modules,
    split_deterministic_prefix,
)

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_MAPS",
    "MAP_NAMES",
    "MCDropoutInferer",
    "mc_dropout_mode",
    "probability_entropy",
    "uncertainty_channels",
    "uncertainty_num_classes",
]

ACTIVATIONS = ("sigmoid", "softmax")
MAP_NAMES = ("mean", "std", "entropy", "mutual_info", "expected_entropy", "tta_std")
"""Every map an inferer of this package can return; ``tta_std`` only with test-time augmentation."""
DEFAULT_MAPS = ("mean", "std", "entropy", "mutual_info")
_ENTROPY_MAPS = ("entropy", "mutual_info", "expected_entropy")


def _check_maps(maps: Sequence[str], activation: str, names: Sequence[str] = MAP_NAMES) -> tuple[str, ...]:
    """Validate ``activation`` and ``maps`` (distinct names from ``names``); return ``maps`` as a tuple."""
    maps = tuple(maps)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}.")
    if not maps or len(set(maps)) != len(maps) or not set(maps) <= set(names):
        raise ValueError(f"maps must be distinct names from {tuple(names)}, got {maps}.")
    return maps


def _per_class(name: str, activation: str) -> bool:
    """Whether a map has one channel per class; the softmax entropy terms sum over classes."""
    return not (activation == "softmax" and name in _ENTROPY_MAPS)


def uncertainty_channels(
    num_classes: int, activation: str = "sigmoid", maps: Sequence[str] = DEFAULT_MAPS
) -> dict[str, slice]:
    """Channel layout of :class:`MCDropoutInferer`'s output.

    Also the layout of :class:`~monai_seg.inferers.TTAMCDropoutInferer`'s output. The maps follow each other
    in the order of ``maps``; ``mean``, ``std`` and ``tta_std`` have one channel per class, the entropy terms
    (``entropy``, ``mutual_info``, ``expected_entropy``) one per class for ``"sigmoid"`` (independent binary
    outputs) and a single channel for ``"softmax"`` (summed over classes). With the default maps:

    - sigmoid, C classes: ``[mean (C), std (C), entropy (C), mutual_info (C)]``
    - softmax, C classes: ``[mean (C), std (C), entropy (1), mutual_info (1)]``

    Args:
        num_classes: output channels of the network (C).
        activation: ``"sigmoid"`` or ``"softmax"``.
        maps: the maps in output order, names from :data:`MAP_NAMES`.

    Returns:
        map name -> slice of the channel dimension.
    """
    maps = _check_maps(maps, activation)
    layout, start = {}, 0
    for name in maps:
        width = num_classes if _per_class(name, activation) else 1
        layout[name] = slice(start, start + width)
        start += width
    return layout


def uncertainty_num_classes(num_channels: int, activation: str = "sigmoid", maps: Sequence[str] = DEFAULT_MAPS) -> int:
    """Invert :func:`uncertainty_channels`: the class count C of an output with ``num_channels`` channels.

    Raises:
        ValueError: when no class count gives ``num_channels``.
    """
    maps = _check_maps(maps, activation)
    per_class = sum(_per_class(m, activation) for m in maps)
    num_classes, rest = divmod(num_channels - (len(maps) - per_class), max(per_class, 1))
    if per_class == 0 or num_classes < 1 or rest:
        raise ValueError(f"cannot infer the classes of {num_channels} channels from maps {maps}, {activation!r}.")
    return num_classes


@contextmanager
def mc_dropout_mode(
    network: nn.Module, dropout_types: Sequence[type[nn.Module]] = DEFAULT_DROPOUT_TYPES
) -> Iterator[list[nn.Module]]:
    """Put ``network`` in eval mode with only its dropout layers sampling, without gradients.

    Unlike ``model.train()`` (MONAI Label's epistemic scoring) or ``monai.networks.utils.train_mode``,
    BatchNorm and InstanceNorm keep their running statistics. Every module's own ``training`` flag is
    restored on exit, also when the body raises.

    Args:
        network: the model.
        dropout_types: module types treated as dropout (default: ``nn.Dropout*``, ``AlphaDropout``,
            ``FeatureAlphaDropout`` and MONAI's ``DropPath``).

    Yields:
        the dropout modules switched on (those with a drop probability above zero).

    Raises:
        ValueError: when ``network`` has no such module; its uncertainty would be zero everywhere.
    """
    modes = [(m, m.training) for m in network.modules()]
    try:
        network.eval()
        active = active_dropout_modules(network, dropout_types)
        if not active:
            raise ValueError(
                f"{type(network).__name__} has no dropout layer with p > 0 (types {tuple(dropout_types)}): "
                "Monte-Carlo dropout would give zero uncertainty. Build the network with dropout, or pass "
                "its dropout layer classes as `dropout_types`."
            )
        for m in active:
            m.training = True
        with torch.no_grad():
            yield active
    finally:
        for m, mode in modes:
            m.training = mode


def _cuda_devices(device: torch.device) -> list[int]:
    """The CUDA device index of ``device`` as a list for ``torch.random.fork_rng``; empty off CUDA."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


@contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed the generators dropout draws from (CPU, and ``device`` if CUDA); restore them on exit."""
    if seed is None:
        yield
        return
    cuda = _cuda_devices(device)
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(cuda[0]):
                torch.cuda.manual_seed(seed)
        yield


def probability_entropy(p: torch.Tensor, activation: str) -> torch.Tensor:
    """Entropy in nats along dim 1: binary entropy per channel (sigmoid) or the sum over classes (softmax).

    Args:
        p: probabilities, shape (B, C, *spatial).
        activation: ``"sigmoid"`` (C independent binary outputs) or ``"softmax"`` (C exclusive classes).

    Returns:
        shape (B, C, *spatial) for ``"sigmoid"``, (B, 1, *spatial) for ``"softmax"``.
    """
    if activation == "sigmoid":
        return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p))
    return -torch.special.xlogy(p, p).sum(dim=1, keepdim=True)


def _probabilities_and_entropy(logits: torch.Tensor, activation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities and their entropy (as :func:`probability_entropy`) from logits (N, C, ...), without log(0).

    For sigmoid, H = softplus(-|z|) + |z| sigmoid(-|z|): two non-negative terms, exact for large |z|.
    """
    if activation == "sigmoid":
        a = logits.abs()
        return logits.sigmoid(), F.softplus(-a) + a * torch.sigmoid(-a)
    log_p = logits.log_softmax(dim=1)
    p = log_p.exp()
    return p, -(p * log_p).sum(dim=1, keepdim=True)


def _activation_bytes(network: nn.Module, run: Callable[[], Any]) -> int:
    """Bytes of all leaf-module outputs during ``run()``: an upper bound of its activation memory."""
    total = [0]

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            total[0] += output.numel() * output.element_size()

    leaves = [m for m in network.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return total[0]


def _memory_budget(device: torch.device) -> int:
    """Bytes one chunk of samples may use: half the free CUDA memory, or a quarter of the free RAM."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 2
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError, AttributeError):  # not POSIX
        return 2**31


def _seconds(run: Callable[[], Any], device: torch.device) -> float:
    """Wall time of ``run()``, synchronised on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


class MCDropoutInferer(Inferer):
    """Monte-Carlo dropout inference: the mean probability of ``num_samples`` dropout samples and its uncertainty.

    Only the dropout layers sample (:func:`mc_dropout_mode`); BatchNorm/InstanceNorm stay in eval and every
    module's mode is restored afterwards. The result is ONE tensor, so that it flows through
    ``SupervisedEvaluator``, ``decollate_batch``, bundle ``postprocessing`` and MONAI Label unchanged::

        (B, C_out, *spatial), channels as in uncertainty_channels(C, activation, maps),
        default [mean (C), std (C), entropy (C or 1), mutual_info (C or 1)]

    ``postprocessing`` thresholds (sigmoid) or argmaxes (softmax) the ``mean`` channels, and
    :class:`monai_seg.transforms.SplitUncertaintyd` gives each map its own key for ``SaveImaged``. A dict
    output would need a custom ``postprocessing`` for every MONAI transform keyed on ``pred``.

    With T samples and probabilities p_t = activation(logits_t):

    - ``mean``: E_t[p_t], the prediction.
    - ``std``: sqrt(E_t[p_t^2] - E_t[p_t]^2), population std of the probabilities, per class.
    - ``entropy``: predictive entropy H[E_t p_t] in nats (total uncertainty); per channel binary entropy for
      ``"sigmoid"``, summed over classes for ``"softmax"``.
    - ``mutual_info``: H[E_t p_t] - E_t H[p_t] >= 0, the epistemic part (BALD).
    - ``expected_entropy``: E_t H[p_t], the aleatoric part (``entropy`` - ``mutual_info``).

    **Sliding windows.** With ``inner`` (e.g. ``SlidingWindowInferer``), each window gets the T samples and
    returns the moments E[p], E[p^2], E[H(p)]; ``inner`` blends those linearly, so overlapping windows mix
    their sample distributions instead of averaging independent logits (which would shrink the std in the
    overlaps into a grid pattern). The input is handed to ``inner`` in float64 so that its accumulators keep
    the moments exact enough for the std; windows reach the network in the input's dtype.

    **Deterministic prefix.** With ``prefix_sampling`` (default), :func:`split_deterministic_prefix` cuts the
    network where dropout starts to matter; the part before it runs once per window and only the rest T
    times. The suffix draws the same dropout masks as the whole network does, so the samples are those of
    full sampling (to float rounding). Nets that do not trace, or trace unfaithfully, are sampled whole.
    The split is computed once per network, on the first input.
    A :class:`~monai_seg.networks.EvalOptimized` wrapper (a bundle's fast inference net) is sampled through the
    net it wraps: with dropout on it would run that net anyway, and its optimised copy has no dropout.

    **Chunks.** ``sample_batch`` samples are evaluated per network call (the batch becomes
    ``sample_batch * B``) and at most one chunk's activations exist at a time. ``None`` (auto) fixes a chunk
    per network and window shape: it caps the chunk so that its activations fit half the free GPU memory (a
    quarter of the free RAM on CPU) and, on the first window shape of the network, times a chunk of 1
    against a chunk of that cap; the faster wins for every shape. The timing runs are extra and draw from
    a forked random state, so they never change the results.

    **Reproducibility.** ``seed`` seeds the CPU (and CUDA) generator inside the call and restores the global
    random state afterwards: the same seed, ``sample_batch`` and input give bitwise-identical maps on CPU.
    Different chunk sizes draw different masks (same distribution). With ``sample_batch=None`` the tuned
    chunk is fixed after the first call, so repeated calls agree bitwise; pass an int to also fix it
    across processes and machines.

    Args:
        num_samples: T, the number of dropout samples, >= 1. T = 1 is one stochastic pass: ``std`` and
            ``mutual_info`` are then zero and ``entropy`` is that pass's entropy (the single-sample
            baseline of uncertainty studies).
        inner: inferer that runs the network on parts of the input (``SlidingWindowInferer``,
            ``SliceInferer``, ...); ``None`` runs it on the whole input.
        activation: ``"sigmoid"`` (independent channels, e.g. binary or multi-label such as BraTS regions or
            TwoHeadUNet's extra presence channel) or ``"softmax"`` (mutually exclusive classes).
        maps: maps to return, in order, from ``("mean", "std", "entropy", "mutual_info", "expected_entropy")``.
        sample_batch: samples per network call, or ``None`` to tune it.
        seed: seed for the dropout masks, or ``None`` to draw from the global random state.
        prefix_sampling: compute the deterministic prefix once (see above).
        dropout_types: module types treated as dropout.

    Raises:
        ValueError: at call time when the network has no dropout with p > 0, or no dropout layer runs.

    Example::

        inferer = MCDropoutInferer(20, inner=SlidingWindowInferer((96, 96, 96), sw_batch_size=2), seed=0)
        out = inferer(image, net)  # (B, 4 * C, H, W, D) for sigmoid
        layout = uncertainty_channels(C, "sigmoid")
        mask, std = out[:, layout["mean"]] > 0.5, out[:, layout["std"]]

    Notes:
        Extra ``network`` arguments (``*args``, ``**kwargs``) are passed unchanged, so the samples are then
        evaluated one per call, without a prefix split. TorchScript modules are not supported (their
        dropout layers are not ``nn.Dropout`` instances); functional ``F.dropout(..., self.training)``
        stays off because its module stays in eval.
    """

    supported_maps: tuple[str, ...] = tuple(name for name in MAP_NAMES if name != "tta_std")

    def __init__(
        self,
        num_samples: int = 20,
        inner: Inferer | None = None,
        activation: str = "sigmoid",
        maps: Sequence[str] = DEFAULT_MAPS,
        sample_batch: int | None = None,
        seed: int | None = None,
        prefix_sampling: bool = True,
        dropout_types: Sequence[type[nn.Module]] = DEFAULT_DROPOUT_TYPES,
    ) -> None:
        super().__init__()
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        if sample_batch is not None and sample_batch < 1:
            raise ValueError(f"sample_batch must be None or >= 1, got {sample_batch}.")
        self.maps = _check_maps(maps, activation, self.supported_maps)
        self.num_samples = num_samples
        self.inner = inner
        self.activation = activation
        self.sample_batch = sample_batch
        self.seed = seed
        self.prefix_sampling = prefix_sampling
        self.dropout_types = tuple(dropout_types)
        self._splits: weakref.WeakKeyDictionary[nn.Module, PrefixSplit | None] = weakref.WeakKeyDictionary()
        self._tuned: weakref.WeakKeyDictionary[nn.Module, dict[tuple, int]] = weakref.WeakKeyDictionary()
        self._probes: weakref.WeakKeyDictionary[nn.Module, tuple[bool, float]] = weakref.WeakKeyDictionary()

    def prefix_split(self, network: nn.Module) -> PrefixSplit | None:
        """The split used for ``network`` (None: sampled whole, or not called yet)."""
        return self._splits.get(network)

    def tuned_sample_batch(self, network: nn.Module) -> dict[tuple, int]:
        """The chunk sizes chosen by auto-tuning for ``network``, keyed by (window shape, dtype, device)."""
        return dict(self._tuned.get(network, {}))

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Run Monte-Carlo dropout inference.

        Args:
            inputs: (B, C_in, *spatial) input, a ``MetaTensor`` keeps its metadata in the output.
            network: the model, returning logits (B, C, *spatial).
            args: extra positional arguments for ``network``.
            kwargs: extra keyword arguments for ``network``.

        Returns:
            (B, C_out, *spatial) in the dtype of ``inputs``, channels as in :func:`uncertainty_channels`.
        """
        if not isinstance(network, nn.Module):
            raise TypeError(f"network must be a torch.nn.Module to switch its dropout on, got {type(network)}.")
        if isinstance(network, EvalOptimized):  # its optimised copy has no dropout: sample the net it wraps
            network = network.network
        x = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        with self._sampling(network, x.device, args, kwargs) as sample_moments:
            stats = self._statistics(x, sample_moments)
        out = self._maps(stats).to(x.dtype if x.dtype.is_floating_point else torch.float32)
        if isinstance(inputs, MetaTensor):
            out = convert_to_dst_type(out, MetaTensor([]).copy_meta_from(inputs, copy_attr=False))[0]
        return out

    @contextmanager
    def _sampling(
        self, network: nn.Module, device: torch.device, args: tuple, kwargs: dict
    ) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
        """Switch the dropout of ``network`` on and seed it; yield ``moments(x)``, the blended sample moments.

        ``moments`` maps a plain tensor (B, C_in, *spatial) to (B, [E p (C), E p^2 (C), E H(p) (C or 1)], ...)
        in float64, window by window through ``inner``. All calls inside one context draw from one random
        stream.

        Raises:
            ValueError: on exit, when no dropout layer ran.
        """

        def window_moments(window: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
            w = window.as_tensor() if isinstance(window, MetaTensor) else window
            return self._moments(w.to(dtype), network, args, kwargs)

        def moments(x: torch.Tensor) -> torch.Tensor:
            if self.inner is None:
                return window_moments(x, x.dtype)
            blended = self.inner(x.to(torch.float64), lambda w: window_moments(w, x.dtype))
            return blended.as_tensor() if isinstance(blended, MetaTensor) else blended

        with mc_dropout_mode(network, self.dropout_types) as active, _seeded(self.seed, device):
            ran: set[nn.Module] = set()
            handles = [m.register_forward_hook(lambda mod, i, o: ran.add(mod)) for m in active]
            try:
                yield moments
            finally:
                for h in handles:
                    h.remove()
        if not ran:
            raise ValueError(f"no dropout layer of {type(network).__name__} ran: the samples would all be equal.")

    def _statistics(self, x: torch.Tensor, moments: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The sample statistics that :meth:`_maps` reads (:func:`_group_statistics`): all samples in one group.

        Args:
            x: (B, C_in, *spatial) plain tensor.
            moments: the function yielded by :meth:`_sampling`.
        """
        return _group_statistics(moments(x), self.activation)

    def _sampler(
        self, x: torch.Tensor, network: nn.Module, args: tuple, kwargs: dict
    ) -> Callable[[int], torch.Tensor]:
        """Return ``run(k)``: the logits of k samples for ``x``, (k * B, C, *spatial), sample-major."""
        if self.prefix_sampling and not args and not kwargs:
            if network not in self._splits:
                self._splits[network] = split_deterministic_prefix(network, x, self.dropout_types)
            split = self._splits[network]
            if split is not None:
                values = split.run_prefix(x)
                return lambda k: split.run_suffix(values, k)
        return lambda k: network(x.repeat(k, *([1] * (x.dim() - 1))), *args, **kwargs)

    def _chunk(self, x: torch.Tensor, network: nn.Module, run: Callable[[int], torch.Tensor], extra: bool) -> int:
        """Samples per network call: ``sample_batch``, or the tuned size for this network and window shape.

        The first window shape of a network is timed (batched or loop) and measured (activation bytes per
        input element); any window shape then gets the chunk that fits the memory budget if batching won,
        else 1, and keeps it, so that repeated calls draw the same masks.
        """
        if extra:
            return 1  # extra network arguments are not repeated per sample
        if self.sample_batch is not None:
            return min(self.sample_batch, self.num_samples)
        key = (tuple(x.shape[1:]), x.dtype, str(x.device))
        tuned = self._tuned.setdefault(network, {})
        if key not in tuned:
            budget = _memory_budget(x.device)
            with torch.random.fork_rng(devices=_cuda_devices(x.device)):
                if network not in self._probes:
                    per_sample = max(1, _activation_bytes(network, lambda: run(1)))  # also warms up
                    cap = max(1, min(self.num_samples, budget // per_sample))
                    batched = cap > 1 and (
                        _seconds(lambda: run(cap), x.device) / cap < _seconds(lambda: run(1), x.device)
                    )
                    self._probes[network] = (batched, per_sample / x[0].numel())
            batched, bytes_per_element = self._probes[network]
            cap = int(budget // max(1.0, bytes_per_element * x[0].numel()))
            tuned[key] = max(1, min(self.num_samples, cap)) if batched else 1
        return tuned[key]

    def _moments(self, x: torch.Tensor, network: nn.Module, args: tuple, kwargs: dict) -> torch.Tensor:
        """The sample moments of one window: (B, C_in, *spatial) -> (B, [E p (C), E p^2 (C), E H(p) (C or 1)], ...).

        Each chunk is reduced in the network's dtype to its mean and sum of squared deviations, which the
        chunks combine in float64 (Chan et al.), so the std stays exact where it is small.
        """
        run = self._sampler(x, network, args, kwargs)
        chunk = self._chunk(x, network, run, bool(args or kwargs))
        n, count = x.shape[0], 0
        for start in range(0, self.num_samples, chunk):
            k = min(chunk, self.num_samples - start)
            logits = run(k)
            if not isinstance(logits, torch.Tensor) or logits.shape[0] != k * n:
                raise TypeError("MCDropoutInferer needs a network that returns one batch-first tensor of logits.")
            p, h = _probabilities_and_entropy(logits.float(), self.activation)
            p, h = p.view(k, n, *p.shape[1:]), h.view(k, n, *h.shape[1:])
            chunk_mean = p.mean(0)
            chunk_m2 = (p - chunk_mean).square().sum(0).double()
            chunk_mean, chunk_h = chunk_mean.double(), h.sum(0, dtype=torch.float64)
            if count == 0:
                mean, m2, entropy_sum = chunk_mean, chunk_m2, chunk_h
            else:
                delta = chunk_mean - mean
                mean = mean + delta * (k / (count + k))
                m2 = m2 + chunk_m2 + delta.square() * (count * k / (count + k))
                entropy_sum = entropy_sum + chunk_h
            count += k
        return torch.cat([mean, m2 / count + mean.square(), entropy_sum / count], dim=1)

    def _maps(self, stats: torch.Tensor) -> torch.Tensor:
        """Turn statistics averaged over groups (see :func:`_group_statistics`) into the maps (B, C_out, ...)."""
        c = stats.shape[1] // 5 if self.activation == "sigmoid" else (stats.shape[1] - 2) // 3
        e = c if self.activation == "sigmoid" else 1
        mean = stats[:, :c].clamp(0.0, 1.0)
        second, expected_entropy = stats[:, c : 2 * c], stats[:, 2 * c : 2 * c + e]
        group_entropy, group_second = stats[:, 2 * c + e : 2 * c + 2 * e], stats[:, 2 * c + 2 * e :]
        maps = {
            "mean": lambda: mean,
            "std": lambda: (second - mean * mean).clamp_min(0.0).sqrt(),
            "entropy": lambda: probability_entropy(mean, self.activation),
            "mutual_info": lambda: (group_entropy - expected_entropy).clamp_min(0.0),
            "expected_entropy": lambda: expected_entropy,
            "tta_std": lambda: (group_second - mean * mean).clamp_min(0.0).sqrt(),
        }
        return torch.cat([maps[name]() for name in self.maps], dim=1)


def _group_statistics(moments: torch.Tensor, activation: str) -> torch.Tensor:
    """Extend the sample moments of one group by the terms that averaging over groups needs.

    A group is the samples of one input (of one augmentation, with test-time augmentation). The mean of
    these tensors over the groups gives E p and E p^2 over all samples, E H(p), the mean of the groups'
    entropies H(E_group p) (for the mutual information within the groups) and the mean of (E_group p)^2
    (for the spread between the groups). One group: H(E p) - E H(p) is the mutual information and the
    spread is zero.

    Args:
        moments: (B, [E p (C), E p^2 (C), E H(p) (E)], ...) with E = C (sigmoid) or 1 (softmax).
        activation: ``"sigmoid"`` or ``"softmax"``.

    Returns:
        (B, [E p (C), E p^2 (C), E H(p) (E), H(E p) (E), (E p)^2 (C)], ...).
    """
    c = (moments.shape[1] - 1) // 2 if activation == "softmax" else moments.shape[1] // 3
    mean = moments[:, :c].clamp(0.0, 1.0)
    return torch.cat([moments, probability_entropy(mean, activation), mean.square()], dim=1)
