"""Training as in the paper: SGD with momentum, weight decay, dropout, learning-rate steps, filter
renormalisation, and checkpoints at the paper's epochs (scaled to the run) for Fig. 4.

Files in the run folder ``out``:

- ``epoch-XXX.pt``: the model at the end of epoch XXX, ``{"model": state_dict, "epoch", "model_name",
  "classes"}`` (``deconvlab.models.load_weights`` reads it);
- ``final.pt``: the same, after the last epoch;
- ``resume.pt``: everything needed to continue exactly (model, optimizer, scheduler, RNG state,
  history), rewritten after every epoch;
- ``metrics.json``: ``{"config", "epochs": [per-epoch loss and accuracy], "final": {"val_accuracy",
  "train_seconds"}}``.

Every file is written atomically. Exact resume: the data order and flips of epoch e come from a
generator seeded with (seed, e), and dropout's global RNG state is saved, so a resumed run ends with
the same weights as an uninterrupted one (on the same machine and thread count).
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from deconvlab._io import write_atomic, write_json_atomic
from deconvlab.data import load_dataset
from deconvlab.data.transforms import statistics
from deconvlab.models import create, list_models, load_model
from deconvlab.training.evaluate import batches, evaluate
from deconvlab.training.renorm import renormalize_model, rms_thresholds

PAPER_CHECKPOINT_EPOCHS = (1, 2, 5, 10, 20, 30, 40, 64)  # Fig. 4


def scaled_checkpoint_epochs(epochs: int) -> list[int]:
    """The paper's Fig. 4 epochs scaled so that its 64 is this run's last: ``ceil(e * epochs / 64)``.

    >>> scaled_checkpoint_epochs(64)
    [1, 2, 5, 10, 20, 30, 40, 64]
    >>> scaled_checkpoint_epochs(12)
    [1, 2, 4, 6, 8, 12]
    """
    return sorted({max(1, math.ceil(e * epochs / 64)) for e in PAPER_CHECKPOINT_EPOCHS})


def default_lr_steps(epochs: int) -> list[int]:
    """Divide the learning rate by 10 after 60% and 85% of the epochs (the paper anneals by hand).

    >>> default_lr_steps(12)
    [8, 11]
    """
    return sorted({max(1, math.ceil(epochs * 0.6)), max(1, math.ceil(epochs * 0.85))})


def _save(path: Path, obj: dict) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, lambda f: f.write(buffer.getvalue()))


def _check_positive(name: str, value, kind=int) -> None:
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        raise ValueError(f"{name}={value!r}: must be a positive {kind.__name__}")


def train(
    model_name: str = "zfnet-mini",
    data: str | os.PathLike = "builtin",
    epochs: int = 8,
    out: str | os.PathLike = "runs/zfnet-mini",
    batch_size: int = 32,
    lr: float = 1e-2,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    dropout: float = 0.5,
    lr_steps: list[int] | None = None,
    renorm: bool = True,
    checkpoint_epochs: list[int] | None = None,
    resume: bool = False,
    seed: int = 0,
    progress: bool = True,
    train_size: int | None = None,
    val_size: int | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
) -> dict:
    """Train ``model_name`` on ``data`` ("builtin" or an image folder) and return ``metrics.json``'s dict.

    ``dropout`` is the drop probability of the fully connected layers (the paper's 0.5) for models that take
    one. ``lr_steps`` (default ``default_lr_steps``): epochs after which the learning rate is divided by
    10. ``checkpoint_epochs`` (default ``scaled_checkpoint_epochs``): epochs whose model is kept as
    ``epoch-XXX.pt``. ``resume=True`` continues the run in ``out`` (or starts it if there is none).
    ``on_epoch_end(epoch_metrics)`` is called after each epoch's files are written.
    """
    _check_positive("epochs", epochs)
    _check_positive("batch_size", batch_size)
    _check_positive("lr", float(lr), float)
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout={dropout!r}: must be a probability in [0, 1)")
    lr_steps = default_lr_steps(epochs) if lr_steps is None else sorted(lr_steps)
    if checkpoint_epochs is None:
        checkpoint_epochs = scaled_checkpoint_epochs(epochs)
    checkpoint_epochs = sorted(checkpoint_epochs)
    for name, values in (("lr_steps", lr_steps), ("checkpoint_epochs", checkpoint_epochs)):
        if any(isinstance(e, bool) or not isinstance(e, int) or not 1 <= e <= epochs for e in values):
            raise ValueError(f"{name}={values!r}: every entry must be an epoch between 1 and epochs={epochs}")
    config = {
        "model": model_name, "data": str(data), "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "momentum": momentum, "weight_decay": weight_decay, "dropout": dropout, "lr_steps": lr_steps,
        "renorm": renorm, "checkpoint_epochs": checkpoint_epochs, "seed": seed, "train_size": train_size,
        "val_size": val_size,
    }  # fmt: skip
    out = Path(out)
    state = _load_resume_state(out, config, resume)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = _build(model_name, 1, dropout)  # only for the input size and the normalisation
        image_size = probe.input_size[1]
        mean, std = statistics(probe)
        options = {"image_size": image_size, "seed": seed, "mean": mean, "std": std}
        train_set = load_dataset(data, split="train", size=train_size, **options)
        val_set = load_dataset(data, split="val", size=val_size, **options)
        if list(val_set.classes) != list(train_set.classes):
            raise ValueError(f"data={str(data)!r}: the val split's classes differ from the train split's")
        torch.manual_seed(seed)
        model = _build(model_name, len(train_set.classes), dropout).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=lr_steps, gamma=0.1)
        history, seconds, start_epoch = [], 0.0, 1
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            history, seconds, start_epoch = state["history"], state["train_seconds"], state["epoch"] + 1
        thresholds = rms_thresholds(model) if renorm else {}
        header = {"model_name": model_name, "classes": list(train_set.classes)}
        for epoch in range(start_epoch, epochs + 1):
            began = time.perf_counter()
            fit = _train_one_epoch(model, optimizer, train_set, batch_size, seed, epoch, thresholds, progress)
            scheduler.step()
            val = evaluate(model, val_set)
            seconds += time.perf_counter() - began
            row = {"epoch": epoch, **fit, "val_loss": val["loss"], "val_accuracy": val["top1"],
                   "val_top5": val["top5"], "seconds": seconds}  # fmt: skip
            history.append(row)
            if epoch in checkpoint_epochs:
                _save(out / f"epoch-{epoch:03d}.pt", {"model": model.state_dict(), "epoch": epoch, **header})
            _save(out / "resume.pt", {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "epoch": epoch,
                "history": history, "train_seconds": seconds, "config": config,
            })  # fmt: skip
            write_json_atomic(out / "metrics.json", {"config": config, "epochs": history})
            if on_epoch_end is not None:
                on_epoch_end(row)
    final = {"val_accuracy": history[-1]["val_accuracy"], "train_seconds": history[-1]["seconds"]}
    metrics = {"config": config, "epochs": history, "final": final}
    if not (out / "final.pt").is_file() or start_epoch <= epochs:
        _save(out / "final.pt", {"model": model.state_dict(), "epoch": epochs, **header})
    write_json_atomic(out / "metrics.json", metrics)
    return metrics


def _load_resume_state(out: Path, config: dict, resume: bool) -> dict | None:
    """The saved state to continue from, or None for a fresh run; refuses to overwrite a run."""
    path = out / "resume.pt"
    if not resume:
        if path.exists() or (out / "metrics.json").exists():
            raise ValueError(
                f"out={str(out)!r} already holds a training run: pass resume=True or choose another folder"
            )
        return None
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["config"] != config:
        changed = sorted(k for k in config if state["config"].get(k) != config[k])
        raise ValueError(
            f"out={str(out)!r}: cannot resume, the run there was started with other settings: {changed}"
        )
    return state


def _train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    dataset,
    batch_size: int,
    seed: int,
    epoch: int,
    thresholds: dict[str, float],
    progress: bool,
) -> dict[str, float]:
    """One pass over ``dataset`` in an order (and with left-right flips) fixed by (seed, epoch)."""
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(dataset), generator=generator)
    flips = torch.rand(len(dataset), generator=generator) < 0.5
    model.train()
    total_loss = correct = seen = 0.0
    lr = optimizer.param_groups[0]["lr"]
    steps = math.ceil(len(dataset) / batch_size)
    bar = tqdm(total=steps, desc=f"epoch {epoch}", disable=not progress, leave=False, unit="batch")
    for step, (inputs, labels) in enumerate(batches(dataset, order, batch_size)):
        flip = flips[step * batch_size : (step + 1) * batch_size]
        inputs = torch.where(flip[:, None, None, None], inputs.flip(-1), inputs)
        logits = model(inputs)
        loss = nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if thresholds:
            renormalize_model(model, thresholds)
        total_loss += loss.item() * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
        bar.update()
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    bar.close()
    return {"train_loss": total_loss / seen, "train_accuracy": correct / seen, "lr": lr}


def _build(spec: str, num_classes: int, dropout: float):
    """A registered model with the paper's ``dropout``, or any spec (``load_model``), freshly initialised."""
    if spec in list_models():
        return create(spec, num_classes=num_classes, dropout=dropout)
    return load_model(spec, num_classes=num_classes)
