"""
ONNX export of a bundle's network with the bundle's metadata embedded.

MONAI's ``ckpt_export`` stores ``metadata.json`` and each config file (``inference.json``) as extra files of
the TorchScript archive, where MONAI Deploy reads them; MONAI's ``onnx_export`` stores none. :func:`onnx_export`
runs MONAI's and then writes the same JSON documents, under the same names, into the ONNX model's
``metadata_props`` (:func:`embed_onnx_metadata`). It also names the ONNX input and output after the metadata's
``network_data_format`` keys (``image``, ``pred``) and makes their batch axis dynamic.

Command line, as ``python -m monai.bundle onnx_export``::

    python -m monai_seg.export onnx_export network_def --filepath models/model.onnx \\
        --ckpt_file models/model.pt --meta_file configs/metadata.json --config_file configs/inference.json \\
        --input_shape "[1, 1, 112, 80]"
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from monai.bundle import ConfigParser
from monai.bundle import onnx_export as monai_onnx_export
from monai.utils import ensure_tuple, optional_import

__all__ = ["embed_onnx_metadata", "onnx_export", "read_onnx_metadata"]

METADATA_FILENAME = "metadata.json"


def _extra_files(meta_file: str | Sequence[str], config_file: str | Sequence[str]) -> dict[str, str]:
    """``{"metadata.json": ..., "<config name>.json": ...}`` as ``ckpt_export`` stores them (JSON text)."""
    files = {METADATA_FILENAME: json.dumps(ConfigParser.load_config_files(meta_file))}
    for f in ensure_tuple(config_file):
        name = os.path.splitext(os.path.basename(f))[0] + ".json"
        if name in files:
            raise ValueError(f"config file name '{name}' of {f} is given twice (or is the metadata's name).")
        files[name] = json.dumps(ConfigParser.load_config_file(f))
    return files


def embed_onnx_metadata(filepath: str, meta_file: str | Sequence[str], config_file: str | Sequence[str]) -> None:
    """
    Write the bundle metadata and config files into the ``metadata_props`` of an ONNX model file, in place.

    Args:
        filepath: the ONNX model file.
        meta_file: the bundle's ``metadata.json`` (a list is merged, as in ``ckpt_export``).
        config_file: the config file(s) to store, e.g. ``inference.json``; each is stored as JSON under
            ``<file name without extension>.json``.
    """
    onnx, _ = optional_import("onnx")
    files = _extra_files(meta_file, config_file)
    model = onnx.load(filepath)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, **files})
    model.doc_string = json.loads(files[METADATA_FILENAME]).get("description", "")
    onnx.save(model, filepath)


def read_onnx_metadata(filepath: str) -> dict[str, Any]:
    """
    The JSON documents that :func:`embed_onnx_metadata` stored in an ONNX model file.

    Args:
        filepath: the ONNX model file.

    Returns:
        ``{"metadata.json": {...}, "inference.json": {...}}``: each ``metadata_props`` entry whose key ends in
        ``.json``, parsed.
    """
    onnx, _ = optional_import("onnx")
    model = onnx.load(filepath, load_external_data=False)
    return {p.key: json.loads(p.value) for p in model.metadata_props if p.key.endswith(".json")}


def onnx_export(
    net_id: str,
    filepath: str,
    ckpt_file: str,
    meta_file: str | Sequence[str],
    config_file: str | Sequence[str],
    input_shape: Sequence[int] | None = None,
    key_in_ckpt: str | None = None,
    converter_kwargs: Mapping | None = None,
    **override: Any,
) -> None:
    """
    ``monai.bundle.onnx_export`` with the I/O names and dynamic batch axis from the metadata, then
    :func:`embed_onnx_metadata`.

    The network is exported with PyTorch's default ONNX exporter (``torch.export``-based, ``dynamo=True``,
    which needs ``onnxscript``); pass ``converter_kwargs={"dynamo": False}`` for the legacy TorchScript-based
    one.

    Args:
        net_id: id of the network in the config, e.g. ``network_def``.
        filepath: the ONNX file to write.
        ckpt_file: the checkpoint (a plain state_dict, or nested with ``key_in_ckpt``).
        meta_file: the bundle's ``metadata.json``.
        config_file: the config(s) that define ``net_id``, e.g. ``inference.json``; also embedded.
        input_shape: shape of the example input, ``[1, C, *spatial]``; default from the metadata.
        key_in_ckpt: key of the weights in a nested checkpoint.
        converter_kwargs: more arguments of ``monai.networks.utils.convert_to_onnx`` (they override the defaults
            set here: ``input_names``, ``output_names``, ``dynamic_axes``).
        override: id-value pairs that override the config, e.g. ``network_def#channels``.
    """
    meta = ConfigParser.load_config_files(meta_file)
    data_format = meta.get("network_data_format", {})
    inputs = list(data_format.get("inputs", {})) or ["input"]
    outputs = list(data_format.get("outputs", {})) or ["output"]
    kwargs = {
        "input_names": inputs,
        "output_names": outputs,
        "dynamic_axes": {name: {0: "batch"} for name in inputs + outputs},
        **(converter_kwargs or {}),
    }
    monai_onnx_export(
        net_id=net_id,
        filepath=filepath,
        ckpt_file=ckpt_file,
        meta_file=meta_file,
        config_file=config_file,
        key_in_ckpt=key_in_ckpt or "",
        use_trace=True,
        input_shape=input_shape,
        converter_kwargs=kwargs,
        **override,
    )
    embed_onnx_metadata(filepath, meta_file, config_file)


if __name__ == "__main__":
    import fire

    fire.Fire({"onnx_export": onnx_export, "embed_onnx_metadata": embed_onnx_metadata})
