"""Resume after a kill: atomic checkpoints, the latest training state restored, fresh starts that never
silently replace an earlier run."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointSaver

from monai_seg.data import make_demo
from monai_seg.handlers import AtomicCheckpointSaver, AtomicDiskSaver, ResumableEarlyStopHandler
from tests.bundle_utils import REPO, config_files, run_bundle

pytestmark = pytest.mark.usefixtures("one_thread")

NERVE = "nerve_ultrasound_segmentation"
NERVE_TINY = {
    "num_workers": 0, "batch_size": 2, "val_fraction": 0.5, "spatial_size": [32, 32],
    "network_def#channels": [16, 16, 16, 16, 16], "network_def#presence_grid": [2, 2],
}
LATEST = "checkpoint_latest.pt"


def error_in_chain(error: BaseException, kind: type[BaseException]) -> BaseException:
    """The first ``kind`` in the chain of an error (MONAI wraps errors of config expressions in RuntimeError)."""
    while not isinstance(error, kind):
        assert error.__cause__ is not None, f"no {kind.__name__} in the chain"
        error = error.__cause__
    return error


def latest(ckpt_dir) -> dict:
    return torch.load(os.path.join(ckpt_dir, LATEST), weights_only=True)


def epoch(checkpoint: dict) -> int:
    """The completed epochs of a saved trainer (ignite keeps the iteration and the epoch length)."""
    return checkpoint["trainer"]["iteration"] // checkpoint["trainer"]["epoch_length"]


def optimizer_steps(checkpoint: dict) -> set[int]:
    """The step counts of every parameter's optimizer state (Adam and RMSprop keep one)."""
    return {int(state["step"]) for state in checkpoint["optimizer"]["state"].values()}


@pytest.fixture(scope="module")
def nerve_data(tmp_path_factory):
    return make_demo("nerve", str(tmp_path_factory.mktemp("nerve_resume") / "data"), num_subjects=2,
                     images_per_subject=4, num_test=1, size=(96, 64))


def nerve_dirs(root, data) -> dict:
    return {"dataset_dir": data, "ckpt_dir": str(root / "models"), "output_dir": str(root / "eval")}


def test_sigkill_mid_epoch_then_the_same_command_resumes(tmp_path, nerve_data):
    """A real ``python -m monai.bundle run training`` killed with SIGKILL after epoch 2's checkpoint (many short
    epochs: on an idle machine a run of 5 finished between two looks at the checkpoint)."""
    epochs, dirs = 30, nerve_dirs(tmp_path, nerve_data)
    meta, train, logging_conf = config_files(NERVE, "metadata.json", "train.json", "logging.conf")
    overrides = {**NERVE_TINY, **dirs, "epochs": epochs}
    command = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", train, "--meta_file", meta,
               "--logging_file", logging_conf]
    for key, value in overrides.items():
        command += [f"--{key}", str(value).replace(" ", "")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    path = os.path.join(dirs["ckpt_dir"], LATEST)

    first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (os.path.isfile(path) and epoch(latest(dirs["ckpt_dir"])) >= 2):
            assert first.poll() is None, "training ended before its second checkpoint"
            assert time.monotonic() < deadline, "no checkpoint of epoch 2 within 120 s"
            time.sleep(0.02)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    saved = latest(dirs["ckpt_dir"])  # never a truncated file: the writes are atomic
    killed_at, epoch_length = epoch(saved), saved["trainer"]["epoch_length"]
    assert 2 <= killed_at < epochs and optimizer_steps(saved) == {killed_at * epoch_length}

    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    log = second.stdout + second.stderr
    assert second.returncode == 0, log[-3000:]
    assert f"Resumed from {path} at epoch {killed_at} of {epochs}." in log
    assert "Epoch[1] Complete" not in log  # continued, not restarted
    final = latest(dirs["ckpt_dir"])
    assert epoch(final) == epochs and final["trainer"]["max_epochs"] == epochs
    assert optimizer_steps(final) == {epochs * epoch_length}  # Adam's state came back with the weights
    assert os.path.isfile(os.path.join(dirs["ckpt_dir"], "model.pt"))


def _brats(root):
    return make_demo("brats", str(root / "data"), num_cases=3, shape=(32, 32, 8)), {
        "num_workers": 0, "batch_size": 8, "spatial_size": [32, 32], "network_def#channels": [8, 16, 32],
        "network_def#blocks": [1, 1, 1]}


def _retina(root):
    return make_demo("drive", root / "data", num_training=3, num_test=1, size=(64, 64)), {
        "num_workers": 0, "batch_size": 2, "patches_per_image": 1, "patch_size": [32, 32], "val_fraction": 0.34,
        "network_def#channels": [4, 8, 16, 32, 64]}


def _skin(root):
    return make_demo("isic", root / "data", num_train=2, num_val=1, num_test=1), {
        "num_workers": 0, "batch_size": 2, "spatial_size": [32, 32], "network_def#channels": [4, 8, 16, 32, 64]}


def _xray(root):
    return make_demo("xray", root / "data", num_train=2, num_val=1, num_test=1, size=(40, 32)), {
        "num_workers": 0, "batch_size": 2, "spatial_size": [32, 32], "network_def#features": [4, 4, 8, 16, 32, 4]}


@pytest.mark.parametrize(
    "bundle, make, extra",
    [
        ("brats_mri_uncertainty", _brats, ("lr_scheduler", "early_stop")),
        ("retina_vessel_segmentation", _retina, ()),
        ("skin_lesion_segmentation", _skin, ()),
        ("xray_multiclass_segmentation", _xray, ("lr_scheduler",)),
    ],
)
def test_every_bundle_resumes_its_training_state(tmp_path, bundle, make, extra):
    data, small = make(tmp_path)
    dirs = {"dataset_dir": data, "ckpt_dir": str(tmp_path / "models"), "output_dir": str(tmp_path / "eval")}
    run_bundle(bundle, ["train.json"], run_id="training", epochs=1, **dirs, **small)
    first = latest(dirs["ckpt_dir"])
    assert set(first) == {"trainer", "network", "optimizer", "best_model", *extra}
    run_bundle(bundle, ["train.json"], run_id="training", epochs=2, **dirs, **small)
    second = latest(dirs["ckpt_dir"])
    assert epoch(second) == 2
    assert optimizer_steps(second) == {2 * first["trainer"]["epoch_length"]}
    if "lr_scheduler" in extra:
        assert second["lr_scheduler"]["last_epoch"] == 2  # the plateau schedule went on counting
    assert second["best_model"]["_saved"]  # the best-model tracking list travels with the state


def test_fresh_start_refuses_to_replace_a_run_unless_overwrite(tmp_path, nerve_data):
    dirs = nerve_dirs(tmp_path, nerve_data)
    run_bundle(NERVE, ["train.json"], run_id="training", epochs=1, **dirs, **NERVE_TINY)
    with pytest.raises(Exception) as info:
        run_bundle(NERVE, ["train.json"], run_id="training", epochs=1, resume="false", **dirs, **NERVE_TINY)
    assert re.search(f"{LATEST} exists.*--overwrite true", str(error_in_chain(info.value, FileExistsError)))
    os.remove(os.path.join(dirs["ckpt_dir"], LATEST))  # only the best model left: still an earlier run
    with pytest.raises(Exception) as info:
        run_bundle(NERVE, ["train.json"], run_id="training", epochs=1, **dirs, **NERVE_TINY)
    assert "model.pt exists" in str(error_in_chain(info.value, FileExistsError))
    run_bundle(NERVE, ["train.json"], run_id="training", epochs=1, resume="false", overwrite="true", **dirs,
               **NERVE_TINY)  # as the command line passes `--resume false --overwrite true`
    fresh = latest(dirs["ckpt_dir"])
    assert epoch(fresh) == 1 and optimizer_steps(fresh) == {fresh["trainer"]["epoch_length"]}


def test_a_damaged_latest_checkpoint_is_a_clear_error(tmp_path, nerve_data):
    dirs = nerve_dirs(tmp_path, nerve_data)
    os.makedirs(dirs["ckpt_dir"])
    with open(os.path.join(dirs["ckpt_dir"], LATEST), "wb") as f:
        f.write(b"PK\x03\x04 truncated")
    with pytest.raises(Exception) as info:
        run_bundle(NERVE, ["train.json"], run_id="training", epochs=1, **dirs, **NERVE_TINY)
    assert re.search(f"cannot resume from .*{LATEST}.*--resume false", str(error_in_chain(info.value, ValueError)))


def _metric_engine(scores: list[float]) -> Engine:
    """An engine whose epoch e reports the key metric ``scores[e - 1]``."""
    engine = Engine(lambda engine, batch: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def _score(engine: Engine) -> None:
        engine.state.metrics = {"dice": scores[engine.state.epoch - 1]}

    return engine


def test_resumed_best_model_tracking_keeps_the_better_model(tmp_path):
    net = torch.nn.Linear(2, 1)
    kwargs = {"save_key_metric": True, "key_metric_name": "dice", "key_metric_filename": "model.pt"}
    saver = AtomicCheckpointSaver(str(tmp_path), {"model": net}, **kwargs)
    engine = _metric_engine([0.8])
    saver.attach(engine)
    engine.run([0], max_epochs=1)
    best = {k: v.clone() for k, v in net.state_dict().items()}
    state = saver.state_dict()
    assert state == {"_saved": [(0.8, "model_key_metric=0.8000.pt")]}

    with torch.no_grad():
        net.weight.add_(1.0)  # the resumed run's weights, scoring worse
    resumed = AtomicCheckpointSaver(str(tmp_path), {"model": net}, **kwargs)
    resumed.load_state_dict(state)
    engine = _metric_engine([0.5])
    resumed.attach(engine)
    engine.run([0], max_epochs=1)
    kept = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.equal(kept[k], best[k]) for k in best)


def _broken_save(obj, f, **kwargs) -> None:
    """``torch.save`` killed half-way: some bytes written, then the process is gone."""
    if isinstance(f, (str, os.PathLike)):
        with open(f, "wb") as out:
            out.write(b"PK\x03\x04 half a checkpoint")
    else:
        f.write(b"PK\x03\x04 half a checkpoint")
    raise KeyboardInterrupt


@pytest.mark.parametrize("saver_class, survives", [(AtomicCheckpointSaver, True), (CheckpointSaver, False)])
def test_a_kill_during_a_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch, saver_class, survives):
    """MONAI's saver writes in place after deleting the previous file; the atomic one replaces it at the end."""
    net = torch.nn.Linear(2, 1)
    saver = saver_class(str(tmp_path), {"model": net}, save_interval=1, n_saved=1, epoch_level=True,
                        save_key_metric=True, key_metric_name="dice", key_metric_filename="model.pt")
    engine = _metric_engine([0.1, 0.9])
    saver.attach(engine)
    engine.run([0], max_epochs=1)
    good = {k: v.clone() for k, v in net.state_dict().items()}
    monkeypatch.setattr(torch, "save", _broken_save)
    with pytest.raises(KeyboardInterrupt):
        engine.run([0], max_epochs=2)
    monkeypatch.undo()
    try:
        kept = torch.load(tmp_path / "model.pt", weights_only=True)
        intact = all(torch.equal(kept[k], good[k]) for k in good)
    except (FileNotFoundError, RuntimeError):
        intact = False
    assert intact == survives


def test_files_to_remove_go_only_once_their_successor_is_written(tmp_path):
    saver = AtomicDiskSaver(str(tmp_path))
    saver({"w": torch.ones(1)}, "checkpoint_epoch=1.pt")
    saver.remove("checkpoint_epoch=1.pt")  # what ignite asks before writing epoch 2
    assert (tmp_path / "checkpoint_epoch=1.pt").is_file()
    saver({"w": torch.zeros(1)}, "checkpoint_epoch=2.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=2.pt"]


def test_interval_filename_needs_one_saved_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="n_saved=1"):
        AtomicCheckpointSaver(str(tmp_path), {"model": torch.nn.Linear(1, 1)}, save_interval=1, n_saved=2,
                              interval_filename=LATEST)


def test_early_stopping_state_round_trip_and_a_spent_patience_stops_at_once():
    trainer = Engine(lambda engine, batch: None)
    handler = ResumableEarlyStopHandler(patience=2, score_function=lambda engine: 0.0)
    with pytest.raises(RuntimeError, match="set_trainer"):
        handler.state_dict()
    handler.set_trainer(trainer)
    handler.load_state_dict({"counter": 1, "best_score": 0.7})
    assert handler.state_dict() == {"counter": 1, "best_score": 0.7} and not trainer.should_terminate
    handler.load_state_dict({"counter": 2, "best_score": 0.7})
    assert trainer.should_terminate  # the run had already stopped early: it stays stopped


def test_early_stopping_patience_starts_above_the_trivial_score():
    scores = iter([0.0, -0.1, 0.0, 0.3, 0.2, 0.1])
    trainer, evaluator = Engine(lambda engine, batch: None), Engine(lambda engine, batch: None)
    handler = ResumableEarlyStopHandler(patience=2, score_function=lambda engine: next(scores), start_above=0.0)
    handler.set_trainer(trainer)
    for _ in range(3):  # no better than trivial: the patience does not run
        handler(evaluator)
    assert handler.state_dict() == {"counter": 0, "best_score": None} and not trainer.should_terminate
    handler(evaluator)  # 0.3 starts it
    handler(evaluator)
    assert handler.state_dict() == {"counter": 1, "best_score": 0.3} and not trainer.should_terminate
    handler(evaluator)
    assert trainer.should_terminate


def test_early_stopping_warns_when_never_above_the_trivial_score(caplog):
    trainer = Engine(lambda engine, batch: None)
    handler = ResumableEarlyStopHandler(patience=1, score_function=lambda engine: 0.0, start_above=0.0)
    handler.set_trainer(trainer)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: handler(engine))
    with caplog.at_level(logging.WARNING):
        trainer.run([0], max_epochs=3)
    assert trainer.state.epoch == 3  # never stopped early
    assert "no validation scored above 0.0 in 3 epochs" in caplog.text


def test_an_early_stopped_run_stays_stopped(tmp_path, nerve_data):
    dirs = nerve_dirs(tmp_path, nerve_data)
    stop = {"epochs": 6, "early_stop_patience": 1, "early_stop_start": "$None",  # the patience runs from epoch 1
            "learning_rate": 0.0}  # a flat score: stops after epoch 2
    run_bundle(NERVE, ["train.json"], run_id="training", **stop, **dirs, **NERVE_TINY)
    stopped = latest(dirs["ckpt_dir"])
    assert epoch(stopped) == 2 and stopped["early_stop"]["counter"] == 1
    run_bundle(NERVE, ["train.json"], run_id="training", **stop, **dirs, **NERVE_TINY)
    assert epoch(latest(dirs["ckpt_dir"])) == 2  # resumed, and stopped again before training an epoch
