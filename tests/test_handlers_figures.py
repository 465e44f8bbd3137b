"""Submission ids, training curves and overlay grids."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from monai_seg.engines import image_id_from_meta
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
