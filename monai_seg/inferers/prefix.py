"""Deterministic-prefix sampling: split a network with ``torch.fx`` where dropout starts to matter.

When dropout sits only in part of a network (the decoder, the layers before the head), everything that
does not depend on a dropout output is the same for every Monte-Carlo sample. :func:`split_deterministic_prefix`
finds that part automatically, so that :class:`~monai_seg.inferers.MCDropoutInferer` computes it once and
samples only the stochastic suffix.

The split is exact, not an approximation: the suffix calls the dropout modules in the same order and on
tensors of the same shape as the whole network does, so with the same random state it draws the same
dropout masks and gives the same samples (up to floating-point rounding of batched convolutions).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers import DropPath

__all__ = ["DEFAULT_DROPOUT_TYPES", "PrefixSplit", "active_dropout_modules", "split_deterministic_prefix"]

logger = logging.getLogger(__name__)

DEFAULT_DROPOUT_TYPES: tuple[type[nn.Module], ...] = (nn.modules.dropout._DropoutNd, DropPath)
"""Module types treated as dropout: ``nn.Dropout``, ``Dropout1d/2d/3d``, ``AlphaDropout``,
``FeatureAlphaDropout`` (all ``_DropoutNd``, which MONAI's ``Dropout`` factory returns) and MONAI's ``DropPath``."""

# functions and tensor methods that draw random numbers when a graph runs: always treated as stochastic
_RANDOM_FUNCTIONS = {
    torch.rand, torch.rand_like, torch.randn, torch.randn_like, torch.randint, torch.randint_like,
    torch.randperm, torch.bernoulli, torch.normal, torch.poisson, torch.multinomial,
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
}  # fmt: skip
_RANDOM_METHODS = {"bernoulli", "bernoulli_", "uniform_", "normal_", "random_", "exponential_", "geometric_"}


def active_dropout_modules(
    network: nn.Module, dropout_types: Sequence[type[nn.Module]] = DEFAULT_DROPOUT_TYPES
) -> list[nn.Module]:
    """Return the modules of ``network`` that are dropout layers with a drop probability above zero.

    A layer counts when it is an instance of ``dropout_types`` and its ``p`` (``drop_prob`` for
    ``DropPath``) is positive; a layer with neither attribute counts as active.
    """
    types = tuple(dropout_types)
    return [
        m
        for m in network.modules()
        if isinstance(m, types) and getattr(m, "p", getattr(m, "drop_prob", 1.0)) > 0
    ]


@dataclass
class PrefixSplit:
    """A network cut into a deterministic prefix (run once) and a stochastic suffix (run per sample).

    Attributes:
        prefix: maps the network input (B, ...) to the tuple of values the suffix needs.
        suffix: maps those values to the network output.
        batched: for each prefix value, whether it is a batch-first tensor to repeat per sample.
    """

    prefix: fx.GraphModule
    suffix: fx.GraphModule
    batched: tuple[bool, ...]

    def run_prefix(self, inputs: torch.Tensor) -> tuple[Any, ...]:
        """Evaluate the deterministic part once. Shape: (B, ...) -> values with batch B."""
        return self.prefix(inputs)

    def run_suffix(self, values: Sequence[Any], num_samples: int) -> torch.Tensor:
        """Evaluate ``num_samples`` samples of the stochastic part in one call.

        Batched values are repeated along the batch dimension, as ``network(x.repeat(num_samples, ...))``
        lays out the samples: rows ``[s * B, (s + 1) * B)`` belong to sample ``s``. The repeat is a copy,
        so in-place layers of the suffix never change the cached prefix values.

        Returns:
            the network output for the samples, shape (num_samples * B, ...).
        """
        return self.suffix(*[_repeat(v, num_samples) if b else v for v, b in zip(values, self.batched)])


def _repeat(x: torch.Tensor, times: int) -> torch.Tensor:
    """Tile ``x`` ``times`` times along the batch dimension (always a copy)."""
    return x.repeat(times, *([1] * (x.dim() - 1)))


class _DropoutTracer(fx.Tracer):
    """Trace into the modules that contain active dropout; keep every other module as a leaf.

    Deterministic modules are opaque (their inside cannot matter to the split) and never need to be
    traceable. ``leaf_depth`` additionally stops at modules that deep (1: the root's children), a
    coarser graph for networks whose inner blocks do not trace faithfully.
    """

    def __init__(
        self, containers: set[nn.Module], leaf_depth: int | None, autowrap_modules: tuple[ModuleType, ...] = ()
    ) -> None:
        super().__init__(autowrap_modules=(math, *autowrap_modules))
        self.containers = containers
        self.leaf_depth = leaf_depth

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if m not in self.containers or next(m.children(), None) is None:
            return True
        if self.leaf_depth is not None and module_qualified_name.count(".") + 1 >= self.leaf_depth:
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _network_modules(network: nn.Module) -> tuple[ModuleType, ...]:
    """The Python modules (not PyTorch's) that define the classes of ``network``'s layers and their bases.

    Passed to ``torch.fx`` as ``autowrap_modules``: their public functions become opaque graph nodes,
    so that argument checks such as ``for s in x.shape[2:]: ...`` no longer stop the trace. Any
    dropout such a function might hide is caught by the verification.
    """
    found = {inspect.getmodule(c) for m in network.modules() for c in type(m).__mro__ if issubclass(c, nn.Module)}
    return tuple(m for m in found if m is not None and not m.__name__.startswith("torch"))


def _stochastic_nodes(gm: fx.GraphModule, active: set[nn.Module]) -> set[fx.Node]:
    """Nodes whose value depends on a random draw: dropout calls, random ops, and everything downstream."""
    stochastic: set[fx.Node] = set()
    for node in gm.graph.nodes:
        seed = (
            (node.op == "call_module" and any(m in active for m in gm.get_submodule(node.target).modules()))
            or (node.op == "call_function" and node.target in _RANDOM_FUNCTIONS)
            or (node.op == "call_method" and node.target in _RANDOM_METHODS)
        )
        if seed or any(a in stochastic for a in node.all_input_nodes):
            stochastic.add(node)
    return stochastic


class _RecordingInterpreter(fx.Interpreter):
    """Run a graph and record, per node, whether its value is a tensor and its first dimension."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.kinds: dict[fx.Node, int | None] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        self.kinds[n] = result.shape[0] if isinstance(result, torch.Tensor) and result.dim() > 0 else None
        return result


def _build_split(
    gm: fx.GraphModule, stochastic: set[fx.Node], kinds: dict[fx.Node, int | None], batch: int
) -> PrefixSplit | None:
    """Cut ``gm`` into a prefix of the non-stochastic nodes and a suffix of the stochastic ones.

    Non-tensor values the suffix needs (shapes, sizes) are recomputed in the suffix from the repeated
    tensors, so that a ``x.shape[0]`` there sees the batch of samples. Returns None when the split
    cannot be expressed (a prefix tensor without a leading batch dimension) or would save nothing.
    """
    nodes = list(gm.graph.nodes)
    output = nodes[-1]
    input_dependent: set[fx.Node] = set()
    for node in nodes:
        if node.op == "placeholder" or any(a in input_dependent for a in node.all_input_nodes):
            input_dependent.add(node)

    suffix = set(stochastic)
    changed = True
    while changed:
        changed = False
        for node in nodes:
            if node in suffix or node.op == "placeholder" or node not in input_dependent:
                continue
            if kinds.get(node) is None and any(u in suffix for u in node.users):
                suffix.add(node)  # a non-tensor value: recompute it per sample batch
                changed = True

    boundary: dict[fx.Node, None] = {}
    for node in nodes:
        if node in suffix and node is not output:
            boundary.update((a, None) for a in node.all_input_nodes if a not in suffix)
    boundary.update((a, None) for a in output.all_input_nodes if a not in suffix)
    batched = []
    for node in boundary:
        is_batched = node in input_dependent
        if is_batched and kinds.get(node) != batch:
            logger.info("no prefix split: prefix value %s has no leading batch dimension", node.name)
            return None
        batched.append(is_batched)
    if not any(n.op in ("call_module", "call_function", "call_method") for n in nodes if n not in suffix):
        return None  # dropout acts on the input itself: nothing to share

    prefix_graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in nodes:
        if node not in stochastic and node is not output:
            env[node] = prefix_graph.node_copy(node, env.__getitem__)
    prefix_graph.output(tuple(env[n] for n in boundary))

    suffix_graph = fx.Graph()
    env = {n: suffix_graph.placeholder(n.name) for n in boundary}
    for node in nodes:
        if node in suffix and node is not output:
            env[node] = suffix_graph.node_copy(node, env.__getitem__)
    suffix_graph.output(fx.map_arg(output.args[0], env.__getitem__))
    return PrefixSplit(fx.GraphModule(gm, prefix_graph), fx.GraphModule(gm, suffix_graph), tuple(batched))


@contextmanager
def _deterministic(network: nn.Module, active: Sequence[nn.Module]) -> Iterator[list[nn.Module]]:
    """Put the whole network in eval mode and record the order in which the dropout modules are called."""
    calls: list[nn.Module] = []
    modes = [(m, m.training) for m in network.modules()]
    handles = [m.register_forward_hook(lambda mod, i, o: calls.append(mod)) for m in active]
    try:
        network.eval()
        with torch.no_grad():
            yield calls
    finally:
        for m, mode in modes:
            m.training = mode
        for h in handles:
            h.remove()


def _close(a: Any, b: torch.Tensor) -> bool:
    """Whether ``a`` is a tensor equal to ``b`` up to the rounding of differently batched kernels."""
    if not isinstance(a, torch.Tensor) or a.shape != b.shape:
        return False
    return torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-4 * max(1.0, b.abs().max().item()))


def _try_split(
    network: nn.Module,
    inputs: torch.Tensor,
    active: list[nn.Module],
    tracer: _DropoutTracer,
    reference: torch.Tensor,
    reference_calls: list[nn.Module],
) -> PrefixSplit | None:
    """Trace with ``tracer``, check the graph against the network and return the verified split."""
    try:
        gm = fx.GraphModule(network, tracer.trace(network))
    except Exception as e:  # tracing runs arbitrary forward code: any failure means "cannot split"
        logger.info("torch.fx could not trace %s: %s", type(network).__name__, e)
        return None
    stochastic = _stochastic_nodes(gm, set(active))
    interpreter = _RecordingInterpreter(gm)
    try:
        with _deterministic(network, active) as calls:
            out = interpreter.run(inputs)
    except Exception as e:  # a wrong trace may fail to run
        logger.info("the traced graph of %s does not run: %s", type(network).__name__, e)
        return None
    if not _close(out, reference) or calls != reference_calls:
        logger.info("the traced graph of %s differs from its forward", type(network).__name__)
        return None
    if not any(a in stochastic for a in list(gm.graph.nodes)[-1].all_input_nodes):
        raise ValueError(
            f"the output of {type(network).__name__} does not depend on any dropout layer: "
            "Monte-Carlo samples would all be equal."
        )
    split = _build_split(gm, stochastic, interpreter.kinds, inputs.shape[0])
    if split is None:
        return None
    try:
        with _deterministic(network, active) as calls:
            values = split.run_prefix(inputs)
            prefix_calls = len(calls)
            out = split.run_suffix(values, 2)
    except Exception as e:
        logger.info("the prefix split of %s does not run: %s", type(network).__name__, e)
        return None
    n = inputs.shape[0]
    if prefix_calls or calls != reference_calls or not (_close(out[:n], reference) and _close(out[n:], reference)):
        logger.info("the prefix split of %s does not reproduce its forward", type(network).__name__)
        return None
    return split


def split_deterministic_prefix(
    network: nn.Module, inputs: torch.Tensor, dropout_types: Sequence[type[nn.Module]] = DEFAULT_DROPOUT_TYPES
) -> PrefixSplit | None:
    """Split ``network`` into the part that no dropout output reaches and the part that it does.

    Tracing uses ``torch.fx`` with a tracer that only enters modules containing active dropout. The
    attempts go from fine to coarse: the full graph, the same with this network's own helper functions
    kept opaque, and a graph of the root's children only. Every candidate is verified on ``inputs`` with
    dropout switched off: the graph must reproduce the network's output and its sequence of dropout
    calls, the prefix must call no dropout, and the suffix run for two samples must reproduce the output
    for both. A trace that silently changes the computation (e.g. ``torch.jit.isinstance`` on a proxy
    drops a branch) is rejected this way.

    Args:
        network: the model; its dropout modules may be in either mode, they are restored.
        inputs: an example input (B, C, *spatial) for the verification.
        dropout_types: module types treated as dropout.

    Returns:
        the verified split, or None when no split is possible or useful (sample the whole network).

    Raises:
        ValueError: when the traced, verified graph shows the output does not depend on any dropout layer.
    """
    active = active_dropout_modules(network, dropout_types)
    if not active:
        return None
    containers = {m for m in network.modules() if any(a in active for a in m.modules())}
    with _deterministic(network, active) as calls:
        reference = network(inputs)
        reference_calls = list(calls)
    if not isinstance(reference, torch.Tensor):
        return None
    own = _network_modules(network)
    for leaf_depth, autowrap in ((None, ()), (None, own), (1, own)):
        split = _try_split(
            network, inputs, active, _DropoutTracer(containers, leaf_depth, autowrap), reference, reference_calls
        )
        if split is not None:
            return split
    return None
