"""Pre-flight checks of MONAI's engines: before training starts, one preprocessed item goes through the network,
so that data the network cannot take (channel count, spatial size) stops the run at once with the file named.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from monai.networks.utils import eval_mode
from monai.utils import ImageMetaKey

__all__ = ["check_network_input"]


def _first_conv(network: torch.nn.Module) -> torch.nn.modules.conv._ConvNd | None:
    """The first convolution of ``network`` (in module order), None when it has none."""
    return next((m for m in network.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)), None)


def check_network_input(
    dataset: Sequence[Mapping],
    network: torch.nn.Module,
    inferer: Callable | None = None,
    key: str = "image",
) -> None:
    """Before training, check that the network takes the data: the channel count of the first
    preprocessed item against the network's first convolution, then one forward pass (through
    ``inferer`` when given, as validation runs it) in eval mode without gradients, which fails for
    a spatial size the network cannot take.

    For bundle configs: ``"initialize": [..., "$monai_seg.engines.check_network_input(@validate#dataset,
    @network, @validate#inferer)"]``.

    Args:
        dataset: preprocessed dataset; its first item's ``key`` is a (C, *spatial) tensor.
        network: the network (``torch.nn.parallel.DistributedDataParallel`` is unwrapped).
        inferer: called as ``inferer(inputs, network)``; None calls the network directly.
        key: the input key of the items.

    Raises:
        ValueError: naming the item's file, for a channel count other than the network's
            ``in_channels`` or any error of the forward pass (e.g. a spatial size the net cannot take).
    """
    if len(dataset) == 0:
        raise ValueError("The dataset is empty: no case to train on.")
    net = getattr(network, "module", network)
    image = torch.as_tensor(dataset[0][key])
    name = getattr(dataset[0][key], "meta", {}).get(ImageMetaKey.FILENAME_OR_OBJ, "the first item")
    conv = _first_conv(net)
    if conv is not None and image.shape[0] != conv.in_channels:
        raise ValueError(
            f"Image {name} has {image.shape[0]} channel(s) after preprocessing, but the network takes "
            f"in_channels={conv.in_channels}."
        )
    device = next(net.parameters()).device
    inputs = image[None].to(device=device, dtype=torch.float32)
    try:
        with eval_mode(net), torch.no_grad():
            inferer(inputs, net) if inferer is not None else net(inputs)
    except Exception as err:
        raise ValueError(
            f"Image {name} of shape {tuple(image.shape)} (C, *spatial) after preprocessing cannot go "
            f"through the network: {err}"
        ) from err
