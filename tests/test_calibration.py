"""Temperature scaling: the fit, the calibration error and Brier score, the calibration file and its application."""

from __future__ import annotations

import json

import pytest
import torch
from monai.inferers import SimpleInferer

from monai_seg.inferers import (
    CalibratedInferer,
    MCDropoutInferer,
    load_temperature,
    read_calibration,
    write_calibration,
)
from monai_seg.metrics import (
    CalibrationStats,
    calibration_target,
    fit_temperature,
    negative_log_likelihood,
    rescale_probabilities,
    sample_pixels,
    separated_channels,
)
from monai_seg.networks import TemperatureScaled

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fit_recovers_the_temperature_of_overconfident_logits():
    """Labels drawn from a calibrated model, logits scaled by 3 (sigmoid channel 0) and 1/2 (channel 1)."""
    g = torch.Generator().manual_seed(0)
    z = 2 * torch.randn(20_000, 2, generator=g)
    y = torch.bernoulli(torch.sigmoid(z), generator=g)
    t = fit_temperature(z * torch.tensor([3.0, 0.5]), y, "sigmoid")
    torch.testing.assert_close(t, torch.tensor([3.0, 0.5]), rtol=0.05, atol=0)
    z3 = 2 * torch.randn(20_000, 3, generator=g)
    y3 = torch.nn.functional.one_hot(torch.multinomial(torch.softmax(z3, 1), 1, generator=g)[:, 0], 3).float()
    t3 = fit_temperature(3 * z3, y3, "softmax")
    assert t3.shape == (1,) and abs(float(t3) - 3.0) < 0.15
    nll = negative_log_likelihood(3 * z3, y3, "softmax")
    assert float(negative_log_likelihood(3 * z3, y3, "softmax", t3)) < float(nll)


def test_a_channel_without_errors_keeps_temperature_one():
    """The nerve net's presence on a few validation images is often perfectly separated: its NLL keeps falling as
    T -> 0, so no temperature is fitted there; the other channel is fitted as usual."""
    g = torch.Generator().manual_seed(0)
    z = 2 * torch.randn(5_000, 1, generator=g)
    y = torch.bernoulli(torch.sigmoid(z), generator=g)
    separable = torch.cat([torch.full((2_500, 1), -1.0), torch.full((2_500, 1), 2.0)])
    logits, target = torch.cat([3 * z, separable], dim=1), torch.cat([y, (separable > 0).float()], dim=1)
    assert separated_channels(logits, target).tolist() == [False, True]
    t = fit_temperature(logits, target)
    assert abs(float(t[0]) - 3.0) < 0.3 and float(t[1]) == 1.0
    one_hot = torch.nn.functional.one_hot(torch.arange(6) % 3, 3).float()
    assert separated_channels(5 * one_hot, one_hot, "softmax").tolist() == [True]
    assert float(fit_temperature(5 * one_hot, one_hot, "softmax")) == 1.0


def test_fit_is_bounded_for_uninformative_logits():
    logits = torch.randn(1000, 1)
    target = torch.bernoulli(torch.full((1000, 1), 0.5))
    assert float(fit_temperature(logits, target, bounds=(0.1, 10.0))) <= 10.0
    with pytest.raises(ValueError, match="bounds"):
        fit_temperature(logits, target, bounds=(0.0, 1.0))


def test_ece_and_brier_against_hand_computed_values():
    """Two bins: [0, .5) holds p=.2,.2 with labels 0,1; [.5, 1] holds p=.9,.9 with labels 1,1.
    ECE = (|0.4 - 1| + |1.8 - 2|) / 4 = 0.2; Brier = (.04 + .64 + .01 + .01) / 4 = 0.175."""
    stats = CalibrationStats(num_bins=2)
    stats.update(torch.tensor([[[0.2, 0.2]]]), torch.tensor([[[0.0, 1.0]]]))
    stats.update(torch.tensor([[[0.9, 0.9]]]), torch.tensor([[[1.0, 1.0]]]))
    torch.testing.assert_close(stats.ece(), torch.tensor([0.2]))
    torch.testing.assert_close(stats.brier(), torch.tensor([0.175]))
    mean_p, frequency, counts = stats.reliability()
    torch.testing.assert_close(mean_p, torch.tensor([0.2, 0.9]))
    torch.testing.assert_close(frequency, torch.tensor([0.5, 1.0]))
    assert counts.tolist() == [2, 2]


def test_targets_and_sampling():
    label = torch.zeros(2, 1, 4, 4)
    label[0, 0, 1, 1] = 1
    presence = calibration_target(label, 2, "sigmoid")  # the two-head net: mask, then presence
    assert presence.shape == (2, 2, 4, 4) and presence[0, 1].eq(1).all() and presence[1, 1].eq(0).all()
    onehot = calibration_target(label, 2, "softmax")
    assert onehot[0, 1, 1, 1] == 1 and onehot[0, 0, 1, 1] == 0
    with pytest.raises(ValueError, match="does not fit"):
        calibration_target(label, 3, "sigmoid")
    logits, target = sample_pixels(torch.randn(2, 2, 4, 4), presence, 5, torch.Generator().manual_seed(0))
    assert logits.shape == target.shape == (10, 2)
    fov = torch.zeros(2, 1, 4, 4)
    fov[:, :, :2, :1] = 1  # two pixels per image
    logits, target = sample_pixels(torch.arange(64.0).view(2, 2, 4, 4), presence, 5, mask=fov)
    assert sorted(logits[:, 0].tolist()) == [0.0, 4.0, 32.0, 36.0]


def test_rescale_undoes_a_temperature_and_keeps_the_argmax():
    logits = 3 * torch.randn(2, 3, 5, 5)
    for activation, act in (("sigmoid", torch.sigmoid), ("softmax", lambda x: torch.softmax(x, 1))):
        calibrated = act(logits / 2)
        torch.testing.assert_close(rescale_probabilities(calibrated, [2.0], activation), act(logits), atol=1e-4, rtol=0)
    softmax = torch.softmax(logits, 1)
    assert torch.equal(rescale_probabilities(softmax, [0.25], "softmax").argmax(1), softmax.argmax(1))


def test_temperature_scaled_net_exports_and_the_inferer_applies_it():
    net = torch.nn.Conv2d(1, 2, 1)
    scaled = TemperatureScaled(net, [2.0, 4.0]).eval()
    x = torch.randn(1, 1, 6, 6)
    with torch.no_grad():
        expected = net(x) / torch.tensor([2.0, 4.0]).view(1, 2, 1, 1)
        torch.testing.assert_close(scaled(x), expected)
        torch.testing.assert_close(torch.jit.script(scaled)(x), expected)
        torch.testing.assert_close(CalibratedInferer(SimpleInferer(), [2.0, 4.0])(x, net), expected)
        torch.testing.assert_close(CalibratedInferer(SimpleInferer(), None)(x, net), net(x))
    with pytest.raises(ValueError, match="positive"):
        TemperatureScaled(net, [0.0])


def test_monte_carlo_samples_are_scaled_before_the_sigmoid():
    """A huge temperature sends every sample to probability 1/2: scaled per sample, not after averaging."""
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 1), torch.nn.Dropout(0.5), torch.nn.Conv2d(4, 1, 1))
    inferer = CalibratedInferer(MCDropoutInferer(4, maps=("mean", "std"), seed=0), [1e6])
    with torch.no_grad():
        out = inferer(5 * torch.randn(1, 1, 4, 4), net.eval())
    torch.testing.assert_close(out[:, 0], torch.full((1, 4, 4), 0.5), atol=1e-4, rtol=0)
    assert out[:, 1].max() < 1e-4


def test_calibration_file_is_written_read_and_refused_for_another_model(tmp_path):
    model, calibration = tmp_path / "model.pt", tmp_path / "calibration.json"
    assert load_temperature(calibration, model) is None  # no file: identity
    torch.save({"w": torch.ones(2)}, model)
    write_calibration(calibration, {"temperature": [1.5, 2.0], "num_pixels": 10}, model)
    assert load_temperature(calibration, model) == [1.5, 2.0]
    assert read_calibration(calibration, model)["num_pixels"] == 10
    torch.save({"w": torch.zeros(2)}, model)  # retrained
    with pytest.raises(ValueError, match="another model"):
        load_temperature(calibration, model)
    calibration.write_text(json.dumps({"temperature": [-1.0]}))
    with pytest.raises(ValueError, match="positive numbers"):
        load_temperature(calibration, model)
    with pytest.raises(ValueError, match="positive numbers"):
        write_calibration(calibration, {"temperature": []}, model)
