"""The studies' experiments (``python -m monai_seg.experiments``): each quick experiment runs once into a
temporary folder; its table, value ranges, plot and resumption are checked on that run."""

from __future__ import annotations

import csv
import json
import math

import pytest
from monai.bundle import ConfigParser
from PIL import Image

from monai_seg.data import make_demo
from monai_seg.experiments import (
    EXPERIMENTS,
    NERVE_MODELS,
    Bundle,
    ExperimentContext,
    RunStore,
    nerve_scores,
    run_experiment,
)
from monai_seg.experiments.cli import main
from tests.bundle_utils import config_files

pytestmark = pytest.mark.usefixtures("one_thread")

COLUMNS = {
    "cross_validation": ["fold", "kaggle_score", "dice", "iou"],
    "model_comparison": ["model", "gating", "params", "sensitivity", "jaccard", "dice", "kaggle_score"],
    "noise": ["condition", "train_noise_std", "val_noise_std", "val_dice", "dice_class0", "dice_class1", "dice_class2"],
    "training_size": ["num_train_images", "val_dice", "dice_class0", "dice_class1", "dice_class2"],
    "uncertainty": ["dropout", "samples", "dice", "uncertainty_auroc", "ece"],
    "nerve_ablation": ["change", "kaggle_score", "dice", "kaggle_score_gated", "dice_gated", "presence_auroc", "params"],
}
UNIT_RANGE = {"kaggle_score", "dice", "iou", "sensitivity", "jaccard", "val_dice", "dice_class0", "dice_class1",
              "dice_class2", "uncertainty_auroc", "ece", "kaggle_score_gated", "dice_gated", "presence_auroc"}


class Lines(list):
    """Collects the progress lines of a run (the ``echo`` of :func:`run_experiment`)."""

    def executed(self) -> list[str]:
        return [line.split("] ")[1].split(":")[0] for line in self if not line.endswith("finished earlier, skipped")]


@pytest.fixture(scope="module")
def experiments(tmp_path_factory):
    """Every experiment once in quick mode: name -> (folder, first run's progress lines)."""
    root = tmp_path_factory.mktemp("experiments")
    done = {}
    for name in EXPERIMENTS:
        lines = Lines()
        run_experiment(name, root / name, quick=True, echo=lines.append)
        done[name] = root / name, lines
    return done


def read_table(folder):
    with open(folder / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_table_columns_ranges_markdown_and_plot(experiments, name):
    folder, lines = experiments[name]
    rows = read_table(folder)
    assert list(rows[0]) == COLUMNS[name]
    for row in rows:
        for column in UNIT_RANGE & set(row):
            assert 0.0 <= float(row[column]) <= 1.0, (column, row)
    markdown = (folder / "results.md").read_text().splitlines()
    assert markdown[0] == "| " + " | ".join(COLUMNS[name]) + " |" and len(markdown) == len(rows) + 2
    with Image.open(folder / "results.png") as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 300
    assert len(lines.executed()) == len(lines) == len(list(folder.glob("*/result.json")))


def test_cross_validation_folds_mean_and_std(experiments):
    rows = read_table(experiments["cross_validation"][0])
    assert [r["fold"] for r in rows] == ["0", "1", "2", "mean", "std"]
    for column in ("kaggle_score", "dice", "iou"):
        values = [float(r[column]) for r in rows[:3]]
        assert float(rows[3][column]) == pytest.approx(sum(values) / 3)
        assert float(rows[4][column]) >= 0
    # folds by subject: each fold validates one of the three demo subjects
    subjects = set()
    for fold in range(3):
        with open(experiments["cross_validation"][0] / f"fold{fold}" / "eval" / "metrics_per_image.csv") as f:
            subjects |= {r["filename"].rsplit("/", 1)[-1].split("_")[0] for r in csv.DictReader(f)}
    assert subjects == {"1", "2", "3"}


def test_model_comparison_rows_and_presence_file(experiments):
    folder = experiments["model_comparison"][0]
    rows = read_table(folder)
    assert [(r["model"], r["gating"]) for r in rows[:2]] == [("two_head_unet", "none"), ("two_head_unet", "presence file")]
    assert {r["model"] for r in rows} == set(NERVE_MODELS)
    assert all(int(r["params"]) > 0 for r in rows)
    with open(folder / "two_head_unet" / "eval" / "metrics_per_image.csv") as f:
        presence = {r["filename"]: float(r["presence_prob"]) for r in csv.DictReader(f)}
    with open(folder / "unet" / "eval" / "metrics_per_image.csv") as f:
        per_image = list(csv.DictReader(f))
    assert set(presence) == {r["filename"] for r in per_image}  # the same split for every net
    gated = next(r for r in rows if r["model"] == "unet" and r["gating"] == "presence file")
    assert float(gated["kaggle_score"]) == pytest.approx(nerve_scores(per_image, presence)["kaggle_score"])


def test_nerve_scores_presence_file():
    per_image = [
        {"filename": "a", "dice": "0.5", "iou": "0.4", "sensitivity": "0.6", "gt_presence": "1"},
        {"filename": "b", "dice": "0.0", "iou": "0.0", "sensitivity": "0.0", "gt_presence": "0"},
        {"filename": "c", "dice": "0.8", "iou": "0.7", "sensitivity": "0.9", "gt_presence": "1"},
    ]
    assert nerve_scores(per_image) == pytest.approx(
        {"sensitivity": 0.75, "jaccard": 0.55, "dice": 0.65, "kaggle_score": 1.3 / 3})
    # "b" (no nerve, a false mask) and "c" (a nerve) are gated: b scores 1, c scores 0
    gated = nerve_scores(per_image, {"a": 0.9, "b": 0.1, "c": 0.2})
    assert gated == pytest.approx({"sensitivity": 0.3, "jaccard": 0.2, "dice": 0.25, "kaggle_score": 0.5})
    with pytest.raises(ValueError, match="no probability for c"):
        nerve_scores(per_image, {"a": 0.9, "b": 0.1})


def test_noise_conditions(experiments):
    rows = {r["condition"]: r for r in read_table(experiments["noise"][0])}
    assert list(rows) == ["none", "both", "train", "val"]
    assert [(float(r["train_noise_std"]), float(r["val_noise_std"])) for r in rows.values()] == [
        (0, 0), (5000, 5000), (5000, 0), (0, 5000)]


def test_uncertainty_runs_both_dropout_placements(experiments):
    folder = experiments["uncertainty"][0]
    rows = read_table(folder)
    assert [(r["dropout"], int(r["samples"])) for r in rows] == [
        (d, t) for d in ("everywhere", "decoder") for t in (1, 4, 8)]
    assert not any(math.isnan(float(r["uncertainty_auroc"])) for r in rows)
    for location, value in (("everywhere", "all"), ("decoder", "decoder")):
        spec = json.loads((folder / f"{location}_train" / "spec.json").read_text())
        assert spec["network_def#dropout_location"] == value


def test_rerun_repeats_no_run(experiments, tmp_path):
    for name, (folder, _) in experiments.items():
        mtimes = {p: p.stat().st_mtime_ns for p in folder.glob("*/result.json")}
        lines = Lines()
        run_experiment(name, folder, quick=True, echo=lines.append)
        assert lines and lines.executed() == [], name
        assert {p: p.stat().st_mtime_ns for p in folder.glob("*/result.json")} == mtimes


@pytest.mark.parametrize("name, missing", [("cross_validation", ["fold1"]), ("uncertainty", ["decoder_T4"])])
def test_partial_experiment_completes_only_the_missing_runs(experiments, name, missing):
    folder = experiments[name][0]
    before = read_table(folder)
    for run_id in missing:
        (folder / run_id / "result.json").unlink()  # as if killed before the run finished
    lines = Lines()
    run_experiment(name, folder, quick=True, echo=lines.append)
    assert lines.executed() == missing
    assert read_table(folder) == before  # deterministic: the redone run gives the same numbers


def test_run_store_keeps_failed_runs_unfinished_and_refuses_other_settings(tmp_path):
    store = RunStore(tmp_path, echo=lambda _: None)

    def fails(folder):
        (folder / "partial.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        store.run("a", fails, {"epochs": 1})
    assert not (tmp_path / "a" / "result.json").exists()
    assert store.run("a", lambda folder: {"dice": 0.5}, {"epochs": 1}) == {"dice": 0.5}
    assert store.run("a", lambda folder: {"dice": 0.0}, {"epochs": 1}) == {"dice": 0.5}  # stored, not rerun
    assert store.executed == ["a"]
    with pytest.raises(ValueError, match="other settings"):
        store.run("a", lambda folder: {"dice": 0.0}, {"epochs": 2})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "result.json").write_text("{trunc")
    with pytest.raises(ValueError, match="result.json is not valid JSON"):
        store.run("b", lambda folder: {}, {})


def test_runs_of_edited_configs_are_not_reused(tmp_path):
    """A stored run's ``spec.json`` records the bundle's configs: after an edit, the experiment refuses the
    stale run (naming its folder) instead of reporting the old numbers as the new ones."""
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(config_files("xray_multiclass_segmentation", "metadata.json")[0].rsplit("/configs/", 1)[0] + "/configs",
                    bundle / "configs")
    context = ExperimentContext(Bundle(bundle), tmp_path / "runs")
    assert context.store(1).run("a", lambda folder: {"dice": 0.5}, {"epochs": 1}) == {"dice": 0.5}
    assert context.store(1).run("a", lambda folder: {"dice": 0.0}, {"epochs": 1}) == {"dice": 0.5}  # reused
    train = bundle / "configs" / "train.json"
    train.write_text(train.read_text().replace('"seed": 0', '"seed": 1'))
    with pytest.raises(ValueError, match=f"{tmp_path / 'runs' / 'a'} holds a run with other settings"):
        context.store(1).run("a", lambda folder: {"dice": 0.0}, {"epochs": 1})


def test_a_none_override_reaches_the_config(tmp_path):
    """``Bundle.run(**{"network_def#prior": None})`` sets the id to None; MONAI's ``create_workflow`` alone would
    drop the None and silently keep the config's value (an ablation row would then repeat the row above)."""
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "metadata.json").write_text("{}")
    (configs / "train.json").write_text(json.dumps(
        {"net": {"prior": 0.05, "width": 4}, "seen": [], "run": "$@seen.append((@net#prior, @net#width))"}))
    bundle = Bundle(tmp_path)
    assert bundle.run(["train.json"]).parser.get_parsed_content("seen") == [(0.05, 4)]
    assert bundle.run(["train.json"], **{"net#prior": None}).parser.get_parsed_content("seen") == [(None, 4)]


def test_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="unknown experiment"):
        run_experiment("nope", tmp_path)
    with pytest.raises(ValueError, match="has no settings"):
        run_experiment("noise", tmp_path, sizes=[5])
    with pytest.raises(ValueError, match="not in 1..4"):
        run_experiment("training_size", tmp_path, quick=True, sizes=[2, 5],
                       dataset_dir=make_demo("xray", tmp_path / "data", num_train=4, num_val=1, num_test=0,
                                             size=(16, 16)))
    with pytest.raises(ValueError, match="unknown models"):
        run_experiment("model_comparison", tmp_path, quick=True, models=["vit"])


def test_command_line_prints_the_table(experiments, capsys):
    folder = experiments["training_size"][0]
    assert main(["training_size", "--quick", "--output_dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "finished earlier, skipped" in out and (folder / "results.md").read_text() in out
    assert main(["noise", "--sizes", "5"]) == 2


def test_xray_train_noise_and_subset_parameters(tmp_path):
    """Noise in raw 16-bit units before the intensity window, on train and/or validation; nested subsets."""
    data = make_demo("xray", tmp_path, num_train=6, num_val=1, num_test=0, size=(16, 16))

    def parse(**override):
        parser = ConfigParser()
        parser.read_config(config_files("xray_multiclass_segmentation", "train.json"))
        parser.update({"dataset_dir": data, "validate_data": False, **override})
        return parser

    names = lambda compose: [type(t).__name__ for t in compose.transforms]  # noqa: E731
    clean = parse()
    assert "RandGaussianNoised" not in names(clean.get_parsed_content("train#preprocessing"))
    assert len(clean.get_parsed_content("train#dataset#data")) == 6
    noisy = parse(train_noise_std=5000.0, val_noise_std=300.0, num_train_images=2)
    train, val = noisy.get_parsed_content("train#preprocessing"), noisy.get_parsed_content("validate#preprocessing")
    assert names(train)[:3] == ["LoadImaged", "RandGaussianNoised", "ScaleIntensityRanged"]
    assert names(val) == ["LoadImaged", "RandGaussianNoised", "ScaleIntensityRanged", "Resized"]
    assert (train.transforms[1].rand_gaussian_noise.std, val.transforms[1].rand_gaussian_noise.std) == (5000.0, 300.0)
    two = [d["id"] for d in noisy.get_parsed_content("train#dataset#data")]
    four = [d["id"] for d in parse(num_train_images=4).get_parsed_content("train#dataset#data")]
    assert len(two) == 2 and len(four) == 4 and set(two) < set(four)


def test_nerve_ablation_starts_at_the_study_and_ends_at_the_defaults():
    """The first row is configs/study.json (but the batch size), the last the bundle's defaults."""
    from monai.bundle import ConfigParser

    from monai_seg.experiments.studies import NERVE_ABLATION
    from tests.bundle_utils import config_files

    def parsed(names, **override):
        parser = ConfigParser()
        parser.read_config(config_files("nerve_ultrasound_segmentation", *names))
        parser.update(override)
        return parser

    rows = list(NERVE_ABLATION.values())
    study, first = parsed(["train.json", "study.json"]), parsed(["train.json"], **rows[0])
    for key in ("network_def", "lr_scheduler", "loss", "learning_rate", "resize_mode"):
        assert first.get(key) == study.get(key), key
    assert rows[-1] == {}
    assert [len(row) for row in rows] == sorted((len(row) for row in rows), reverse=True)  # one change a row
