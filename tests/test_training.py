"""Training: renormalisation, checkpoint epochs, evaluation, exact resume, loss decrease, CLI, demo."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from deconvlab.cli import app
from deconvlab.data import BuiltinDataset
from deconvlab.models import create, load_weights
from deconvlab.training import (
    evaluate,
    renormalize_filter_rms,
    rms_thresholds,
    scaled_checkpoint_epochs,
    train,
)

TINY = {"epochs": 3, "batch_size": 32, "train_size": 96, "val_size": 24, "progress": False}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DECONVLAB_CACHE", str(tmp_path / "cache"))


def test_renormalisation_follows_the_definition():
    weight = torch.randn(6, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 0.05
    weight[[1, 4]] *= 20  # these two filters exceed the radius
    original = weight.numpy().copy()
    scaled = renormalize_filter_rms(weight, 0.1)
    rms = np.sqrt((original.reshape(6, -1) ** 2).mean(axis=1))
    expected = original * np.minimum(1, 0.1 / rms)[:, None, None, None]
    assert scaled == 2 and (rms > 0.1).sum() == 2
    np.testing.assert_allclose(weight.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(np.sqrt((weight.numpy()[[1, 4]] ** 2).mean(axis=(1, 2, 3))), 0.1, rtol=1e-6)


def test_first_layer_threshold_is_scaled_to_the_input_range():
    thresholds = rms_thresholds(create("zfnet-mini", num_classes=3))
    # normalised pixels reach (1 - 0.406) / 0.225 = 2.64 (blue channel); the paper's pixels 128
    assert list(thresholds) == ["features.0", "features.4", "features.8", "features.10", "features.12"]
    np.testing.assert_allclose(thresholds["features.0"], 0.1 * 128 / ((1 - 0.406) / 0.225))
    assert [thresholds[k] for k in list(thresholds)[1:]] == [0.1] * 4


def test_checkpoint_epochs_scale_the_papers():
    assert scaled_checkpoint_epochs(64) == [1, 2, 5, 10, 20, 30, 40, 64]
    assert scaled_checkpoint_epochs(128) == [2, 4, 10, 20, 40, 60, 80, 128]
    assert scaled_checkpoint_epochs(3) == [1, 2, 3]
    assert scaled_checkpoint_epochs(1) == [1]


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_evaluate_counts_top1_and_top5():
    logits = torch.randn(40, 7, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 7, (40,), generator=torch.Generator().manual_seed(2))
    data = _ListDataset([(logits[i], int(labels[i])) for i in range(40)])
    result = evaluate(nn.Identity(), data, batch_size=16)
    order = np.argsort(-logits.numpy(), axis=1)
    assert result["count"] == 40
    np.testing.assert_allclose(result["top1"], np.mean(order[:, 0] == labels.numpy()))
    np.testing.assert_allclose(result["top5"], np.mean([labels[i].item() in order[i, :5] for i in range(40)]))
    np.testing.assert_allclose(result["loss"], nn.functional.cross_entropy(logits, labels).item(), rtol=1e-5)


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    whole = train(out=tmp_path / "whole", **TINY)

    def interrupt(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(out=tmp_path / "cut", on_epoch_end=interrupt, **TINY)
    assert not (tmp_path / "cut" / "final.pt").exists()
    resumed = train(out=tmp_path / "cut", resume=True, **TINY)
    a, b = _weights(tmp_path / "whole" / "final.pt"), _weights(tmp_path / "cut" / "final.pt")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0)
    for row_a, row_b in zip(whole["epochs"], resumed["epochs"], strict=True):
        assert row_a["train_loss"] == row_b["train_loss"] and row_a["val_accuracy"] == row_b["val_accuracy"]
    names = sorted(p.name for p in (tmp_path / "cut").glob("epoch-*.pt"))
    assert names == ["epoch-001.pt", "epoch-002.pt", "epoch-003.pt"]
    metrics = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2, 3]
    assert metrics["final"]["val_accuracy"] == metrics["epochs"][-1]["val_accuracy"]
    # the epoch checkpoints are plain weight files for load_weights, and the last is the final model
    model = load_weights(create("zfnet-mini", num_classes=12), tmp_path / "cut" / "epoch-003.pt")
    torch.testing.assert_close(model.state_dict(), a, rtol=0, atol=0)


def test_runs_are_not_overwritten_and_resume_checks_settings(tmp_path):
    train(out=tmp_path / "run", **{**TINY, "epochs": 1})
    with pytest.raises(ValueError, match="already holds a training run"):
        train(out=tmp_path / "run", **{**TINY, "epochs": 1})
    with pytest.raises(ValueError, match=r"other settings: \['lr'\]"):
        train(out=tmp_path / "run", resume=True, lr=0.5, **{**TINY, "epochs": 1})
    with pytest.raises(ValueError, match="lr_steps=\\[5\\]"):
        train(out=tmp_path / "other", lr_steps=[5], **TINY)
    with pytest.raises(ValueError, match="epochs=0"):
        train(out=tmp_path / "other", **{**TINY, "epochs": 0})


def test_short_training_lowers_the_loss(tmp_path):
    data = BuiltinDataset("train", size=480)
    torch.manual_seed(0)
    before = evaluate(create("zfnet-mini", num_classes=12), data)["loss"]
    np.testing.assert_allclose(before, math.log(12), atol=0.05)  # the small logits start near uniform
    # without dropout, so that 120 steps are enough to see the drop
    settings = {"epochs": 4, "batch_size": 16, "dropout": 0.0, "train_size": 480, "val_size": 24}
    metrics = train(out=tmp_path / "run", progress=False, **settings)
    model = load_weights(create("zfnet-mini", num_classes=12), tmp_path / "run" / "final.pt")
    after = evaluate(model, data)["loss"]
    assert after < 0.9 * before
    losses = [row["train_loss"] for row in metrics["epochs"]]
    assert losses[-1] < losses[0]


def test_cli_train_then_evaluate(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--epochs", "1", "--out", str(out), "--train-size", "48",
                                 "--val-size", "24", "--batch-size", "16", "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "val accuracy" in result.output
    result = runner.invoke(app, ["evaluate", str(out / "final.pt"), "--split", "test", "--json"])
    assert result.exit_code == 0, result.output
    reported = json.loads(result.output)
    model = load_weights(create("zfnet-mini", num_classes=12), out / "final.pt")
    expected = evaluate(model, BuiltinDataset("test"))
    assert reported["top1"] == expected["top1"] and reported["top5"] == expected["top5"]
    again = runner.invoke(app, ["train", "--epochs", "1", "--out", str(out), "--train-size", "48"])
    assert again.exit_code == 2 and "already holds a training run" in again.output


def test_demo_model_reaches_the_goal(demo_model):
    model, run_dir = demo_model
    assert not model.training
    metrics = json.loads((run_dir / "metrics.json").read_text())
    epochs = metrics["config"]["epochs"]
    assert sorted(p.name for p in run_dir.glob("epoch-*.pt")) == [
        f"epoch-{e:03d}.pt" for e in scaled_checkpoint_epochs(epochs)
    ]
    recomputed = evaluate(model, BuiltinDataset("val"))
    np.testing.assert_allclose(recomputed["top1"], metrics["final"]["val_accuracy"])
    assert recomputed["top1"] >= 0.9
