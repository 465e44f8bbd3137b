"""``--tracking mlflow``: MONAI's default MLflow settings on a bundle, a local store and no server."""

from __future__ import annotations

import pytest
from monai.utils import path_to_sqlite_uri

from monai_seg.data import make_demo
from tests.bundle_utils import run_bundle

mlflow = pytest.importorskip("mlflow")

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mlflow_tracking_writes_a_local_run(tmp_path):
    data = make_demo("nerve", str(tmp_path / "data"), num_subjects=3, images_per_subject=2, num_test=1)
    eval_dir = tmp_path / "eval"
    run_bundle(
        "nerve_ultrasound_segmentation", ["train.json"], run_id="training", tracking="mlflow",
        experiment_name="nerve", dataset_dir=data, ckpt_dir=str(tmp_path / "models"),
        # an expression, as in train.json: MONAI builds the logged config's path by appending to it
        output_dir=f"$'{eval_dir}'", epochs=2, batch_size=4, num_workers=0,
        **{"network_def#channels": [16, 32, 64, 128, 256]},
    )
    client = mlflow.MlflowClient(tracking_uri=path_to_sqlite_uri(str(eval_dir / "mlruns.db")))
    (run,) = client.search_runs([client.get_experiment_by_name("nerve").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["max_epochs"] == "2"
    # the trainer's loss per iteration and the validator's key metric per epoch, in one run
    assert {"train_loss", "val_kaggle_dice"} <= run.data.metrics.keys()
    assert len(client.get_metric_history(run.info.run_id, "val_kaggle_dice")) == 2
    # the executed config is the run's artifact, stored under <output_dir>/mlruns
    (artifact,) = client.list_artifacts(run.info.run_id)
    assert artifact.path.startswith("config_") and artifact.path.endswith(".json")
    assert list((eval_dir / "mlruns").glob(f"*/artifacts/{artifact.path}"))
    assert list(eval_dir.glob("events.out.tfevents.*"))  # TensorBoard logging goes on as well
