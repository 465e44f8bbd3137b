"""The MONAI model zoo's checks of a submitted bundle (its CI's ``verify_bundle``), run offline on every bundle.

The zoo receives a bundle folder (``configs/``, ``docs/``, ``LICENSE``, ``models/model.pt``) and checks, in this
order: the directory layout, ``version`` listed in ``changelog``, ``verify_metadata`` against the metadata schema
(here the copy the package ships, ``monai_seg/resources/meta_schema.json``, so nothing is downloaded), the config
keys of the training and inference workflows (MONAI's ``TrainProperties``, ``InferProperties`` and
``MetaProperties``), ``verify_net_in_out`` on the metadata's shapes, and ``ckpt_export`` of ``models/model.pt`` to
TorchScript, loaded back with the metadata and config it embeds and compared with the PyTorch net on batches of 1
and 2 (atol 1e-5, rtol 1e-4). Each bundle folder here is a copy of the repository's with the checkpoint of a tiny
random-weight net (``network_def`` with the ``TINY_NETS`` overrides): the checks read its keys and shapes, not
what it learnt.

``network_data_format.outputs.pred`` serves two readers. ``verify_net_in_out`` compares ``num_channels`` with the
network's output channels; MONAI Label reads ``channel_def`` as the values of the label map it serves (``0``
background). They agree where the label map is the argmax of the channels (one channel per class); a net with
one channel per foreground class, thresholded (BraTS, the nerve's mask channel), serves one class more than its
channels. :func:`test_channel_def_names_the_served_classes` checks that rule.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out
from monai.bundle.reference_resolver import ReferenceResolver
from monai.bundle.utils import ID_REF_KEY
from monai.transforms import AsDiscreted, Compose
from monai.utils import BundleProperty, BundlePropertyConfig

from tests.bundle_utils import BUNDLES, SCHEMA, TINY_NETS

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = sorted(p.name for p in BUNDLES.iterdir() if (p / "configs" / "metadata.json").is_file())
REQUIRED_FILES = ("configs/metadata.json", "LICENSE", "models/model.pt", "configs/inference.json")
"""What the zoo requires (metadata, licence) and prefers (weights, inference config) in a bundle folder."""
WORKFLOWS = {"train": "train.json", "infer": "inference.json"}


@pytest.fixture(scope="module")
def zoo_bundles(tmp_path_factory) -> tuple[Path, dict[str, torch.nn.Module]]:
    """A folder of bundles as the zoo receives them, each repository bundle with ``models/model.pt`` of a tiny net;
    and the nets (bundle name -> net in eval mode)."""
    root = tmp_path_factory.mktemp("models")
    nets = {}
    for name in NAMES:
        _copy_bundle(BUNDLES / name, root / name)
        parser = ConfigParser()
        parser.read_config(str(root / name / "configs" / "inference.json"))
        parser.update(TINY_NETS[name][0])
        nets[name] = parser.get_parsed_content("network_def").eval()
        (root / name / "models").mkdir()
        torch.save(nets[name].state_dict(), root / name / "models" / "model.pt")
    return root, nets


def _copy_bundle(source: Path, target: Path) -> None:
    """The tracked parts of a bundle (``configs/``, ``docs/``, ``LICENSE``), without the outputs of local runs."""
    shutil.copytree(source / "configs", target / "configs")
    shutil.copytree(source / "docs", target / "docs")
    shutil.copy(source / "LICENSE", target / "LICENSE")


def _referenced_id(parser: ConfigParser, name: str, refer_id: str) -> str | None:
    """The id that the config item ``refer_id`` references (``@id``), normalised; None for an expression or a
    value. ``evaluator`` and ``val_interval`` are referenced by the ``ValidationHandler`` of ``train#handlers``."""
    if name in ("evaluator", "val_interval"):
        handlers = parser.get("train#handlers", [])
        ref = next((h.get(refer_id) for h in handlers if h.get("_target_") == "ValidationHandler"), None)
    else:
        ref = parser.get(refer_id)
    is_reference = isinstance(ref, str) and ref.startswith(ID_REF_KEY)
    return ReferenceResolver.normalize_id(ref[len(ID_REF_KEY):]) if is_reference else None


def wrong_properties(bundle: Path, workflow_type: str) -> list[str]:
    """The properties of MONAI's workflow tables that ``configs/<train|inference>.json`` lacks: a required id that
    is absent, or an optional one that is referenced under another id than the table's (the check of
    ``ConfigWorkflow.check_properties``, read from the raw config: nothing is instantiated). The references are
    compared normalised: MONAI 1.6's own comparison takes ``@train#preprocessing`` (the ``#`` separator of the
    configs) for another id than ``train::preprocessing``."""
    workflow = ConfigWorkflow(
        config_file=str(bundle / "configs" / WORKFLOWS[workflow_type]),
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type=workflow_type,
    )
    wrong = []
    for name, prop in workflow.properties.items():
        prop_id, refer_id = prop[BundlePropertyConfig.ID], prop.get(BundlePropertyConfig.REF_ID)
        if prop.get(BundleProperty.REQUIRED):
            wrong += [] if prop_id in workflow.parser else [name]
        elif refer_id is not None:
            referenced = _referenced_id(workflow.parser, name, refer_id)
            wrong += [] if referenced in (None, ReferenceResolver.normalize_id(prop_id)) else [name]
    return wrong


@pytest.mark.parametrize("name", NAMES)
def test_the_zoo_checks_pass(zoo_bundles, name):
    root, nets = zoo_bundles
    bundle = root / name
    meta, inference = str(bundle / "configs" / "metadata.json"), str(bundle / "configs" / "inference.json")
    override = {"bundle_root": str(bundle), **TINY_NETS[name][0]}
    assert [f for f in REQUIRED_FILES if not (bundle / f).is_file()] == []
    metadata = ConfigParser.load_config_file(meta)
    assert metadata["version"] in metadata["changelog"], "the version has a changelog entry"

    verify_metadata(meta_file=meta, filepath=str(SCHEMA))
    assert {kind: wrong_properties(bundle, kind) for kind in WORKFLOWS} == {"train": [], "infer": []}
    verify_net_in_out(net_id="network_def", meta_file=meta, config_file=inference, device="cpu", **override)
    ts_file = bundle / "models" / "verify_model.ts"
    ckpt_export(net_id="network_def", filepath=str(ts_file), ckpt_file=str(bundle / "models" / "model.pt"),
                meta_file=meta, config_file=inference, **override)
    extra = {"metadata.json": "", "inference.json": ""}
    ts = torch.jit.load(str(ts_file), _extra_files=extra)
    assert {k: json.loads(v) for k, v in extra.items()} == {
        "metadata.json": metadata, "inference.json": ConfigParser.load_config_file(inference)}
    for batch in (1, 2):  # the batch axis stays dynamic
        x = torch.randn(batch, *TINY_NETS[name][1][1:])
        with torch.no_grad():
            torch.testing.assert_close(ts(x), nets[name](x), atol=1e-5, rtol=1e-4)


def test_a_bundle_without_preprocessing_fails_the_key_check(tmp_path):
    """The zoo's key check once failed the BraTS bundle with "'train' should have 'preprocessing'"."""
    bundle = tmp_path / "broken"
    _copy_bundle(BUNDLES / "brats_mri_uncertainty", bundle)
    train = ConfigParser.load_config_file(str(bundle / "configs" / "train.json"))
    del train["train"]["preprocessing"]
    train["train"]["dataset"]["transform"] = "@validate#preprocessing"
    ConfigParser.export_config_file(train, str(bundle / "configs" / "train.json"))
    assert wrong_properties(bundle, "train") == ["train_preprocessing"]


def _transforms(transform) -> list:
    """The transforms of a (nested) ``Compose``, flattened."""
    if isinstance(transform, Compose):
        return [t for inner in transform.transforms for t in _transforms(inner)]
    return [transform]


@pytest.mark.parametrize("name", NAMES)
def test_channel_def_names_the_served_classes(name):
    """Inputs: one ``channel_def`` entry per channel. Output ``pred``: ``channel_def`` names the values ``0..K-1`` of
    the served label map, ``0`` background, with K the net's ``out_channels`` when the postprocessing takes their
    argmax (``num_channels`` is then K too) and ``out_channels + 1`` when it thresholds them."""
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / name / "configs" / "inference.json"))
    parser.read_meta(str(BUNDLES / name / "configs" / "metadata.json"))
    data_format = parser["_meta_"]["network_data_format"]
    for key, tensor in data_format["inputs"].items():
        assert list(tensor["channel_def"]) == [str(c) for c in range(tensor["num_channels"])], f"{name}: input {key}"

    pred = data_format["outputs"]["pred"]
    out_channels = parser.get_parsed_content("network_def#out_channels")
    argmax = any(any(t.argmax) for t in _transforms(parser.get_parsed_content("postprocessing"))
                 if isinstance(t, AsDiscreted) and "pred" in t.keys)
    classes = out_channels if argmax else out_channels + 1
    assert list(pred["channel_def"]) == [str(c) for c in range(classes)] and pred["channel_def"]["0"] == "background"
    if argmax:
        assert pred["num_channels"] == out_channels == len(pred["channel_def"])
