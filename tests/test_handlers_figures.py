"""Submission ids, training curves and overlay grids."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from monai_seg.handlers import image_id_from_meta
from monai_seg.visualize import save_overlay_grid, save_training_curves


def test_image_id_from_meta():
    assert image_id_from_meta(MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": "/data/test/17.tif"})) == 17
    with pytest.raises(ValueError, match="1_2.tif"):
        image_id_from_meta(MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": "/data/train/1_2.tif"}))
    with pytest.raises(ValueError, match="Kaggle image id"):
        image_id_from_meta(torch.zeros(1, 4, 4))


def test_save_training_curves(tmp_path):
    path = tmp_path / "curves.png"
    save_training_curves({"train_loss": [1.0, 0.5, 0.4], "val_kaggle_dice": [0.2, 0.5, 0.6], "empty": []}, str(path))
    width, height = Image.open(path).size
    assert width > 2 * height  # two panels side by side; the empty series is not drawn
    assert not list(tmp_path.glob("*.tmp*"))


@pytest.mark.parametrize("min_seconds, drawn", [(0.0, [1, 2, 3]), (1e9, [1, 3])])
def test_training_curves_redraw(monkeypatch, min_seconds, drawn):
    """The curves are redrawn at most every ``min_seconds`` and always at the end of the run, also when
    early stopping ends it; every epoch is recorded either way."""
    from ignite.engine import Engine, Events

    import monai_seg.handlers.figures as figures

    sizes: list[int] = []
    monkeypatch.setattr(figures, "save_training_curves", lambda history, _: sizes.append(len(history["train_loss"])))
    trainer = Engine(lambda engine, batch: [{"loss": torch.tensor(float(batch))}])  # decollated, as MONAI's
    figures.TrainingCurves("unused.png", min_seconds=min_seconds).attach(trainer)
    trainer.add_event_handler(Events.EPOCH_COMPLETED(once=3), lambda engine: engine.terminate())
    trainer.run([1, 2], max_epochs=10)
    assert sizes == drawn


@pytest.mark.parametrize("min_seconds, drawn", [(0.0, [1, 2, 3]), (1e9, [1, 3])])
def test_overlay_grid_of_the_best_validation_is_drawn_by_the_trainer(monkeypatch, min_seconds, drawn):
    """On the trainer, the grid of the evaluator's best run is drawn at most every ``min_seconds`` and
    when training ends, so the file always ends on the validation of the best checkpoint."""
    from ignite.engine import Engine, Events

    import monai_seg.handlers.figures as figures

    epochs: list[int] = []
    monkeypatch.setattr(figures, "save_overlay_grid", lambda *args, presence, **kwargs: epochs.append(int(presence[0])))
    trainer = Engine(lambda engine, batch: None)

    def validate(engine, batch):  # one decollated item, tagged with the trainer's epoch
        return [{"image": torch.zeros(1, 4, 4), "pred": torch.zeros(1, 4, 4), "presence": trainer.state.epoch}]

    evaluator = Engine(validate)
    scores = {1: 0.5, 2: 0.9, 3: 0.95, 4: 0.7}  # new bests at epochs 1-3

    @evaluator.on(Events.COMPLETED)
    def mark_best(engine):  # what MONAI's evaluator records, by the trainer's epoch
        best = max(scores[e] for e in range(1, trainer.state.epoch + 1))
        engine.state.best_metric_epoch = engine.state.epoch if scores[trainer.state.epoch] == best else 0

    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: evaluator.run([0]))
    figures.OverlayGrid("unused.png", only_best=True, evaluator=evaluator, min_seconds=min_seconds).attach(trainer)
    trainer.run([0], max_epochs=4)
    assert epochs == drawn


@pytest.mark.parametrize("with_labels", [True, False])
def test_save_overlay_grid(tmp_path, with_labels):
    images = [torch.rand(1, 40, 30) for _ in range(3)]
    masks = [(torch.rand(1, 40, 30) > 0.7).float() for _ in range(3)]
    path = tmp_path / "grid.png"
    save_overlay_grid(images, masks if with_labels else None, masks, str(path), presence=[0.1, 0.5, 0.9],
                      titles=["a", "b", "c"])
    width, height = Image.open(path).size
    # 3 rows of 3 panels (image, ground truth, prediction) are wider than high; of 2 panels, higher than wide
    assert (width > height) == with_labels


@pytest.mark.parametrize("chosen", ["use", "env"])
def test_figures_render_without_changing_the_backend(tmp_path, chosen):
    """Whether a notebook chose its plotting backend with ``matplotlib.use`` or ``MPLBACKEND`` (here a
    vector-only one: no Agg canvas, no display), importing the package (figures, experiments included) and
    drawing a figure through it writes the PNG and leaves the backend as it was."""
    path = tmp_path / "curves.png"
    backend = {"use": "svg", "env": "pdf"}[chosen]
    code = (
        "import matplotlib\n"
        + (f"matplotlib.use({backend!r})\n" if chosen == "use" else "")
        + "import monai_seg, monai_seg.visualize, monai_seg.experiments.studies\n"
        f"monai_seg.visualize.save_training_curves({{'train_loss': [1.0, 0.5]}}, {str(path)!r})\n"
        "print(matplotlib.get_backend())\n"
    )
    env = {**os.environ, "MPLBACKEND": backend} if chosen == "env" else dict(os.environ)
    env.pop("DISPLAY", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == backend
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_are_drawn_outside_pyplot(tmp_path):
    """``new_figure`` + ``save_figure`` write a PNG without registering a pyplot figure."""
    import matplotlib.pyplot as plt

    from monai_seg.visualize import new_figure, save_figure

    open_before = plt.get_fignums()
    fig, axes = new_figure(1, 2, figsize=(4, 2))
    axes[1].plot([0, 1], [1, 0])
    save_figure(fig, str(tmp_path / "f.png"))
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == open_before
