"""Top-1 and top-5 accuracy of a model on a dataset."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset


def batches(dataset: Dataset, indices: torch.Tensor, batch_size: int):
    """Yield (inputs, labels) batches of ``dataset`` items in the order of ``indices``."""
    for start in range(0, len(indices), batch_size):
        items = [dataset[int(i)] for i in indices[start : start + batch_size]]
        yield torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 256) -> dict[str, float]:
    """``{"top1", "top5", "loss", "count"}`` over the whole dataset, in eval mode (restored after).

    top-k counts an image as right when its label is among the k highest logits (k is capped at the
    number of classes). ``loss`` is the mean cross-entropy.
    """
    if len(dataset) == 0:
        raise ValueError("dataset is empty: nothing to evaluate")
    was_training = model.training
    model.eval()
    top1 = top5 = loss = 0.0
    try:
        for inputs, labels in batches(dataset, torch.arange(len(dataset)), batch_size):
            logits = model(inputs)
            ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices
            top1 += (ranked[:, 0] == labels).sum().item()
            top5 += (ranked == labels[:, None]).any(dim=1).sum().item()
            loss += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
    finally:
        model.train(was_training)
    count = len(dataset)
    return {"top1": top1 / count, "top5": top5 / count, "loss": loss / count, "count": count}
