"""``deconvlab tied``: train one tied-weight model and show, with the run's own numbers, that it goes
up with W and down with W^T.

``run_showcase(model, data, out)`` writes into ``out``: ``filters.png``, ``reconstructions.png``,
``samples.png``, ``summary.json`` and a page, ``index.md`` and ``index.html``, that answers "does an
RBM (ConvRBM, autoencoder) use the transpose?" with this run's measurements. The trained weights
go to ``checkpoint.pt``; running the same command again reuses them instead of training again.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.special import expit

from deconvlab import arithmetic
from deconvlab._io import write_atomic, write_bytes_atomic, write_json_atomic
from deconvlab.tied._threads import single_thread
from deconvlab.tied.autoencoder import TiedConvAutoencoder
from deconvlab.tied.conv_rbm import ConvRBM
from deconvlab.tied.page import Heading, Paragraph, Picture, Table, to_html, to_markdown
from deconvlab.tied.pictures import filters_picture, tile
from deconvlab.tied.rbm import BernoulliRBM

MODELS = ("rbm", "crbm", "autoencoder")
DATASETS = ("digits", "builtin")
N_SHOWN = 16  # held-out images in every picture and measurement


# ------------------------------------------------------------------------------------------ data
def digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits / 16 (in [0, 1]), shuffled once: 80% train, 20% held out, (N, 64)."""
    from sklearn.datasets import load_digits

    X = load_digits().data / 16.0
    order = np.random.RandomState(seed).permutation(len(X))
    cut = int(0.8 * len(X))
    return X[order[:cut]], X[order[cut:]]


def builtin_split(n_train: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """The built-in dataset's first ``n_train`` training and ``n_train / 5`` validation images at
    64x64, as (N, 3, 64, 64) floats in [0, 1]."""
    from deconvlab.data import BuiltinDataset

    def load(split, size):
        data = BuiltinDataset(split, image_size=64, size=size)
        return np.stack([data.image(i) for i in range(len(data))]).transpose(0, 3, 1, 2) / 255.0

    return load("train", n_train), load("val", max(N_SHOWN, n_train // 5))


def _shrink(images: np.ndarray, factor: int, grey: bool) -> np.ndarray:
    """Average ``factor x factor`` blocks (and the colour channels, if ``grey``)."""
    n, c, h, w = images.shape
    out = images.reshape(n, c, h // factor, factor, w // factor, factor).mean(axis=(3, 5))
    return out.mean(axis=1, keepdims=True) if grey else out


def _standardise(images: np.ndarray) -> np.ndarray:
    """Each image to zero mean and unit variance (Gaussian visible units have unit variance)."""
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    return (images - mean) / (images.std(axis=(1, 2, 3), keepdims=True) + 1e-8)


# ---------------------------------------------------------------------------------- what a run shows
@dataclass
class Showcase:
    """What one trained model shows: the answer, the measured facts, the pictures, raw numbers."""

    title: str
    answer: str
    facts: list[tuple[str, str]]
    pictures: dict[str, tuple[Image.Image, str]]
    explanation: str
    numbers: dict = field(default_factory=dict)


def _rows_picture(rows: list[np.ndarray], *, normalise: bool, scale: int) -> Image.Image:
    """Rows of ``(n, C, H, W)`` images, one row each, n columns."""
    stacked = np.concatenate(rows)
    tiles = stacked[:, 0] if stacked.shape[1] == 1 else stacked.transpose(0, 2, 3, 1)
    return tile(tiles, columns=len(rows[0]), normalise=normalise, scale=scale)


def _resume_or_train(
    out: Path, config: dict, get_state: Callable[[], dict], set_state: Callable[[dict], None], train: Callable
) -> dict:
    """Load ``checkpoint.pt`` if it was written for this ``config``; else train and write it."""
    path = out / "checkpoint.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        if saved.get("config") == config:
            set_state(saved["state"])
            return {**saved["record"], "resumed": True}
    begin = time.perf_counter()
    record = {"history": train(), "seconds": time.perf_counter() - begin}
    write_atomic(path, lambda f: torch.save({"config": config, "state": get_state(), "record": record}, f))
    return {**record, "resumed": False}


def _seconds(record: dict) -> str:
    return f"{record['seconds']:.1f} s" + (" (earlier run, resumed)" if record["resumed"] else "")


def _max_gap(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


# ----------------------------------------------------------------------------------------- RBM
def _rbm(data: str, epochs: int | None, seed: int, out: Path, n_builtin: int) -> Showcase:
    if data == "digits":
        train, test = digits_split(seed)
        shape, params, what = (8, 8), {"n_components": 100, "learning_rate": 0.06}, "digits"
    else:
        train, test = (_shrink(x, 4, grey=True).reshape(len(x), -1) for x in builtin_split(n_builtin))
        shape, params, what = (
            (16, 16),
            {"n_components": 64, "learning_rate": 0.02},
            "built-in images (16x16 grey)",
        )
    params.update(batch_size=10, n_iter=epochs or 20, random_state=seed, centered=True)
    rbm = BernoulliRBM(**params)
    untrained = BernoulliRBM(**{**params, "n_iter": 0}).fit(train)

    def set_state(state):
        for name, value in state.items():
            setattr(rbm, name, value.numpy())
        rbm.n_features_in_ = train.shape[1]

    def train_rbm():
        rbm.fit(train)  # no per-epoch history: the loop stays free of Python bookkeeping

    record = _resume_or_train(
        out, {"model": "rbm", "data": data, **params},
        lambda: {name: torch.as_tensor(getattr(rbm, name)) for name in BernoulliRBM._FITTED}, set_state,
        train_rbm,
    )  # fmt: skip
    shown = test[:N_SHOWN]
    W, b = rbm.components_, rbm.intercept_visible_
    h = rbm.transform(shown)
    down = rbm.visible_probabilities(h)
    by_transpose = np.stack([expit(W.T @ h_i + b) for h_i in h])  # one column vector at a time
    filters = W.reshape(len(W), 1, *shape)
    by_conv_transpose = expit(arithmetic.conv_transpose(h[:, :, None, None], filters).reshape(len(h), -1) + b)
    gap_transpose, gap_conv = _max_gap(down, by_transpose), _max_gap(down, by_conv_transpose)
    pair = (("before", untrained), ("after", rbm))
    mse = {name: float(np.mean((m.reconstruct(test) - test) ** 2)) for name, m in pair}
    pl = {name: float(m.pseudo_likelihood(test).mean()) for name, m in pair}

    chains, snapshots, v = [shown], [0], shown
    rng = np.random.RandomState(seed)
    for step in range(1, 1001):  # v -> h ~ p(h|v) -> v ~ p(v|h); the pictures show p(v|h)
        h_sample = rng.uniform(size=(len(v), len(W))) < rbm.hidden_probabilities(v)
        p_v = rbm.visible_probabilities(h_sample)
        v = (rng.uniform(size=p_v.shape) < p_v).astype(np.float64)
        if step in (1, 10, 100, 1000):
            chains.append(p_v)
            snapshots.append(step)
    n_h, n_v = W.shape
    return Showcase(
        title=f"RBM on {what}: up with W, down with W^T",
        answer=(
            f"Yes. The RBM computes its hidden units with W and its visible units with W^T, one matrix "
            f"of {n_h} x {n_v} = {W.size} numbers both ways. On {len(shown)} held-out images of this run, "
            f"p(v|h) differs from sigmoid(W^T h + b) (written one column vector at a time) by at most "
            f"{gap_transpose:.1e}, and from sigmoid(conv_transpose(h, W) + b) computed by "
            f"deconvlab.arithmetic, with W read as {n_h} filters of {shape[0]}x{shape[1]}, by at most "
            f"{gap_conv:.1e}."
        ),
        facts=[
            (
                "weight tensors",
                f"1: `components_` W, {n_h} x {n_v}; p(h|v) = sigmoid(W v + c), p(v|h) = sigmoid(W^T h + b)",
            ),
            ("max abs p(v|h) - sigmoid(W^T h + b)", f"{gap_transpose:.1e}"),
            ("max abs p(v|h) - sigmoid(arithmetic.conv_transpose(h, W) + b)", f"{gap_conv:.1e}"),
            (
                "held-out reconstruction MSE, untrained -> trained",
                f"{mse['before']:.4f} -> {mse['after']:.4f}",
            ),
            (
                "held-out pseudo-log-likelihood per image, untrained -> trained",
                f"{pl['before']:.2f} -> {pl['after']:.2f}",
            ),
            (
                "training",
                f"{params['n_iter']} epochs of centered persistent CD, batch {params['batch_size']}, "
                f"learning rate {params['learning_rate']}: {_seconds(record)}",
            ),
        ],  # fmt: skip
        pictures={
            "filters": (rbm.filters_picture(shape, scale=4), f"The {n_h} rows of W, each as a picture."),
            "reconstructions": (
                _rows_picture(
                    [shown.reshape(-1, 1, *shape), rbm.reconstruct(shown).reshape(-1, 1, *shape)],
                    normalise=False,
                    scale=4,
                ),
                "Held-out images (top) and sigmoid(W^T p(h|v) + b) (bottom): up with W, down with W^T.",
            ),  # fmt: skip
            "samples": (
                _rows_picture([c.reshape(-1, 1, *shape) for c in chains], normalise=False, scale=4),
                f"Gibbs chains started at the held-out images: p(v|h) after {snapshots} steps.",
            ),
        },
        explanation=(
            "Hidden and visible units are conditionally independent given the other layer, and the "
            "energy -b.v - c.h - h.W v is symmetric in how it couples them: so the hidden units read the "
            "visible ones through W and the visible units read the hidden ones through W^T. A fully "
            "connected RBM is a convolutional one whose filters cover the whole image, so W^T h is "
            "conv_transpose(h, W) with 1x1 hidden maps. W^T is not W^-1: the reconstruction is a "
            "guess from the model, which is why the error is not zero."
        ),
        numbers={
            "max_gap_transpose": gap_transpose,
            "max_gap_conv_transpose": gap_conv,
            "mse": mse,
            "pseudo_likelihood": pl,
            "seconds": record["seconds"],
            "params": params,
        },  # fmt: skip
    )


# ------------------------------------------------------------------------------------ ConvRBM
def _module_state(module: torch.nn.Module) -> tuple[Callable, Callable]:
    return (lambda: module.state_dict()), module.load_state_dict


def _down_checks(weight: np.ndarray, h: np.ndarray, down: np.ndarray, bias: np.ndarray) -> dict:
    """How far ``down`` is from the three independent formulas of deconvlab.arithmetic."""
    c = bias[:, None, None]
    full = arithmetic.conv(h, arithmetic.flipped_weight(weight, 1), padding="full")
    C = arithmetic.conv_matrix(down.shape[1:], weight)
    by_matrix = np.stack([C.T @ h_i.ravel() for h_i in h]).reshape(down.shape)
    return {
        "conv_transpose": _max_gap(down, arithmetic.conv_transpose(h, weight) + c),
        "flipped_full_conv": _max_gap(down, full + c),
        "matrix_transpose": _max_gap(down, by_matrix + c),
        "matrix_shape": list(C.shape),
    }


def _crbm(data: str, epochs: int | None, seed: int, out: Path, n_builtin: int) -> Showcase:
    if data == "digits":
        train, test = (x.reshape(-1, 1, 8, 8) for x in digits_split(seed))
        what, visible, kernel = "digits (binary visible units)", "binary", 3
        fit = {"learning_rate": 2.0, "sparsity_target": 0.1, "epochs": epochs or 15}
    else:
        train, test = (_standardise(_shrink(x, 2, grey=True)) for x in builtin_split(n_builtin))
        what, visible, kernel = "built-in images (32x32 grey, Gaussian visible units)", "gaussian", 7
        fit = {"learning_rate": 0.05, "sparsity_target": 0.05, "epochs": epochs or 10}
    fit.update(batch_size=20, seed=seed)
    model = ConvRBM(1, 16, kernel, visible=visible, pool_size=2, seed=seed)
    X, shown = torch.tensor(train, dtype=torch.float32), torch.tensor(test[:N_SHOWN], dtype=torch.float32)
    with torch.no_grad():
        before = float(((model.reconstruct(shown) - shown) ** 2).mean())
    record = _resume_or_train(out, {"model": "crbm", "data": data, **fit}, *_module_state(model),
                              lambda: model.fit(X, **fit))  # fmt: skip

    checked = copy.deepcopy(model).double()  # float64 copy: compare formulas, not rounding
    with torch.no_grad():
        v = shown.double()
        h = checked.hidden_probabilities(v)
        down = checked.visible_logits(h)
        after = float(((model.reconstruct(shown) - shown) ** 2).mean())
        generator = torch.Generator().manual_seed(seed)
        chains, snapshots, state = [shown], [0], shown
        for steps in (1, 10, 100):
            for _ in range(steps - snapshots[-1]):
                hidden = model.sample_hidden(state, generator)
                state = model.sample_visible(hidden, generator)
            chains.append(model.visible_mean(hidden))
            snapshots.append(steps)
        one_per_block = bool(hidden.unflatten(2, (-1, 2)).unflatten(4, (-1, 2)).sum(dim=(3, 5)).max() <= 1)
    W = checked.weight.detach().numpy()
    gaps = _down_checks(W, h.numpy(), down.numpy(), checked.visible_bias.detach().numpy())
    n_numbers = W.size
    down_formula = "conv_transpose2d(h, weight) + c"
    mean = f"sigmoid({down_formula})" if visible == "binary" else f"N({down_formula}, 1)"
    return Showcase(
        title=f"Convolutional RBM on {what}: up with conv2d(v, W), down with conv_transpose2d(h, W)",
        answer=(
            f"Yes. The convolutional RBM (Lee et al. 2009) computes its hidden pre-activations with "
            f"conv2d(v, W) and its visible units with conv_transpose2d(h, W): the same Parameter "
            f"`weight` ({' x '.join(map(str, W.shape))}, {n_numbers} numbers) both ways. On "
            f"{len(shown)} held-out images of this run, the visible pre-activation differs from "
            f"deconvlab.arithmetic's conv_transpose(h, W) by at most {gaps['conv_transpose']:.1e}, from the "
            f"full convolution with the flipped filters by at most {gaps['flipped_full_conv']:.1e}, and "
            f"from C^T h, with C the convolution's explicit {gaps['matrix_shape'][0]} x "
            f"{gaps['matrix_shape'][1]} matrix, by at most {gaps['matrix_transpose']:.1e}."
        ),
        facts=[
            (
                "weight tensors",
                f"1: `weight` {tuple(W.shape)}; p(h|v) from conv2d(v, weight) + b, p(v|h) = {mean}",
            ),
            ("max abs difference from arithmetic.conv_transpose(h, W)", f"{gaps['conv_transpose']:.1e}"),
            (
                "max abs difference from the full conv with flipped filters",
                f"{gaps['flipped_full_conv']:.1e}",
            ),
            ("max abs difference from C^T h", f"{gaps['matrix_transpose']:.1e}"),
            (
                "probabilistic max-pooling",
                f"2x2 blocks; at most one hidden unit on per block in every sample: {one_per_block}",
            ),
            ("held-out reconstruction MSE, untrained -> trained", f"{before:.4f} -> {after:.4f}"),
            (
                "training",
                f"{fit['epochs']} epochs of CD-1, batch {fit['batch_size']}, learning rate "
                f"{fit['learning_rate']}, sparsity target {fit['sparsity_target']}: {_seconds(record)}",
            ),
        ],  # fmt: skip
        pictures={
            "filters": (filters_picture(model.weight.detach().numpy(), scale=8), "The 16 filters of W."),
            "reconstructions": (
                _rows_picture(
                    [shown.numpy(), model.reconstruct(shown).detach().numpy()],
                    normalise=visible == "gaussian",
                    scale=4,
                ),
                "Held-out images (top) and conv_transpose2d(p(h|v), W) + c, through the sigmoid for binary "
                "units (bottom).",
            ),  # fmt: skip
            "samples": (
                _rows_picture([c.numpy() for c in chains], normalise=visible == "gaussian", scale=4),
                f"Gibbs chains started at the held-out images, visible means after {snapshots} steps.",
            ),
        },
        explanation=(
            "Every hidden unit of map k sees one window of the image through filter W_k. The visible "
            "units collect, from every hidden unit whose window covers them, that unit's value times the "
            "filter weight that connects them: a scatter of W_k over the hidden map, which is the full "
            "convolution with the flipped filter, which is conv_transpose with W itself. Lee et al. "
            "write it as a valid convolution with the flipped filter going up and a full convolution "
            "going down; PyTorch's conv2d is a cross-correlation, so the flips land the other way."
        ),
        numbers={
            "gaps": gaps,
            "mse": {"before": before, "after": after},
            "seconds": record["seconds"],
            "history": record["history"],
            "fit": fit,
            "one_unit_per_block": one_per_block,
        },  # fmt: skip
    )


# ---------------------------------------------------------------------------------- autoencoder
def _autoencoder(data: str, epochs: int | None, seed: int, out: Path, n_builtin: int) -> Showcase:
    if data == "digits":
        train, test = (x.reshape(-1, 1, 8, 8) for x in digits_split(seed))
        what, shape = "digits", (1, 16, 3)
    else:
        train, test = (_shrink(x, 2, grey=False) for x in builtin_split(n_builtin))
        what, shape = "built-in images (32x32 colour)", (3, 16, 5)
    fit = {"epochs": epochs or 15, "batch_size": 32, "learning_rate": 0.01, "seed": seed}
    padding = shape[2] // 2
    model = TiedConvAutoencoder(*shape, padding=padding, pool_size=2, seed=seed)
    X, shown = torch.tensor(train, dtype=torch.float32), torch.tensor(test[:N_SHOWN], dtype=torch.float32)
    with torch.no_grad():
        before = float(((model(shown) - shown) ** 2).mean())
    record = _resume_or_train(out, {"model": "autoencoder", "data": data, **fit}, *_module_state(model),
                              lambda: model.fit(X, **fit))  # fmt: skip

    checked = copy.deepcopy(model).double()
    v = shown.double()
    with torch.no_grad():
        code = checked.encode(v)
        unpooled = checked.unpool(code).numpy()
        decoded = checked.decode(code).numpy()
        after = float(((model(shown) - shown) ** 2).mean())
    W, bias = checked.weight.detach().numpy(), checked.decoder_bias.detach().numpy()
    by_arithmetic = arithmetic.conv_transpose(unpooled, W, bias, padding=padding,
                                              output_padding=checked.output_padding(code))  # fmt: skip
    gap = _max_gap(decoded, by_arithmetic)
    split = _gradient_split(checked, v)
    weights = [name for name, p in model.named_parameters() if p.ndim == 4]
    projections = _strongest_unit_projections(model, shown)
    return Showcase(
        title=f"Tied convolutional autoencoder on {what}: encode with W, decode with its transpose",
        answer=(
            f"Yes. The decoder is conv_transpose2d with the encoder's own Parameter `weight` "
            f"({' x '.join(map(str, W.shape))}, {W.size} numbers): {len(weights)} weight tensor in "
            f"the model. "
            f"On {len(shown)} held-out images of this run, the decoder's output differs from "
            f"deconvlab.arithmetic's conv_transpose of the unpooled code with W by at most {gap:.1e}. "
            f"Because the tensor is shared, its gradient is the sum of what the encoder and the decoder "
            f"ask for (norms {split['encoder']:.3g} and {split['decoder']:.3g}; max abs gap "
            f"{split['gap']:.1e}), so every step moves both."
        ),
        facts=[
            (
                "weight tensors",
                f"{len(weights)}: `weight` {tuple(W.shape)}; encode relu(conv2d(x, weight) + b) "
                f"then 2x2 max-pool with switches; decode unpool then conv_transpose2d(., weight) + c",
            ),
            ("max abs decoder output - arithmetic.conv_transpose(unpool(code), W) - c", f"{gap:.1e}"),
            ("gradient of the tied weight = encoder part + decoder part", f"max abs gap {split['gap']:.1e}"),
            ("held-out reconstruction MSE, untrained -> trained", f"{before:.4f} -> {after:.4f}"),
            (
                "training",
                f"{fit['epochs']} epochs of Adam on the reconstruction MSE, batch "
                f"{fit['batch_size']}, learning rate {fit['learning_rate']}: {_seconds(record)}",
            ),
        ],  # fmt: skip
        pictures={
            "filters": (filters_picture(model.weight.detach().numpy(), scale=8), "The 16 filters of W."),
            "reconstructions": (
                _rows_picture(
                    [shown.numpy(), model(shown).detach().clamp(0, 1).numpy()], normalise=False, scale=4
                ),
                "Held-out images (top) and their reconstructions (bottom).",
            ),  # fmt: skip
            "samples": (
                _rows_picture([shown.numpy(), projections], normalise=True, scale=4),
                "The deconvnet's view: each image's single strongest code unit, every other unit set to "
                "zero, unpooled through its switch and projected down with conv_transpose2d(., W).",
            ),
        },
        explanation=(
            "An autoencoder with tied weights decodes with the transpose of its encoder. With max-pooling "
            "whose switches are kept, decoding is exactly the deconvnet's path down (Zeiler & Fergus): "
            "unpool through the switches, then filter with the transposed filters, conv_transpose with "
            "the same W. The deconvnet also rectifies on the way down; here the code is already "
            "non-negative."
        ),
        numbers={
            "max_gap_conv_transpose": gap,
            "gradient_split": split,
            "mse": {"before": before, "after": after},
            "seconds": record["seconds"],
            "history": record["history"],
            "fit": fit,
        },  # fmt: skip
    )


def _gradient_split(model: TiedConvAutoencoder, x: torch.Tensor) -> dict:
    """The tied weight's gradient vs the sum of an encoder-only and a decoder-only gradient."""
    import torch.nn.functional as F

    encoder_weight = model.weight.detach().clone().requires_grad_()
    decoder_weight = model.weight.detach().clone().requires_grad_()
    z = F.relu(F.conv2d(x, encoder_weight, model.encoder_bias, padding=model.padding))
    pooled, switches = F.max_pool2d(z, model.pool_size, return_indices=True)
    unpooled = F.max_unpool2d(pooled, switches, model.pool_size, output_size=z.shape[2:])
    y = F.conv_transpose2d(unpooled, decoder_weight, model.decoder_bias, padding=model.padding)
    F.mse_loss(y, x).backward()
    model.zero_grad()
    F.mse_loss(model(x), x).backward()
    total = encoder_weight.grad + decoder_weight.grad
    gap = float((model.weight.grad - total).abs().max())
    model.zero_grad()
    return {
        "encoder": float(encoder_weight.grad.norm()),
        "decoder": float(decoder_weight.grad.norm()),
        "gap": gap,
    }


@torch.no_grad()
def _strongest_unit_projections(model: TiedConvAutoencoder, images: torch.Tensor) -> np.ndarray:
    """Per image: keep only the largest code value, decode it without the bias (the deconvnet's view)."""
    import torch.nn.functional as F

    code = model.encode(images)
    flat = code.features.flatten(1)
    keep = torch.zeros_like(flat).scatter_(
        1, flat.argmax(dim=1, keepdim=True), flat.max(dim=1, keepdim=True).values
    )
    single = type(code)(keep.view_as(code.features), code.switches, code.unpooled_size, code.input_size)
    down = F.conv_transpose2d(model.unpool(single), model.weight, stride=model.stride, padding=model.padding,
                              output_padding=model.output_padding(single))  # fmt: skip
    return down.numpy()


# ----------------------------------------------------------------------------------------- page
_BUILDERS = {"rbm": _rbm, "crbm": _crbm, "autoencoder": _autoencoder}
_QUESTION = {"rbm": "an RBM", "crbm": "a convolutional RBM", "autoencoder": "a tied autoencoder"}


def _page(show: Showcase, model: str, data: str, command: str) -> list:
    return [
        Heading(show.title),
        Heading(f"Does {_QUESTION[model]} use the transpose?", 2),
        Paragraph(show.answer),
        Heading("Measured in this run", 2),
        Table(("what", "value"), show.facts),
        Heading("Why", 2),
        Paragraph(show.explanation),
        Heading("Pictures", 2),
        *(Picture(f"{name}.png", caption) for name, (_, caption) in show.pictures.items()),
        Paragraph(f"Made by `{command}`. Every number is in `summary.json`."),
    ]


def run_showcase(
    model: str, data: str, out, *, epochs: int | None = None, seed: int = 0, n_builtin: int = 480
) -> dict:
    """Train ``model`` ("rbm", "crbm", "autoencoder") on ``data`` ("digits", "builtin"; the latter's
    first ``n_builtin`` training images), write the pictures, ``summary.json``, ``index.md`` and
    ``index.html`` into ``out``; return the summary."""
    if model not in MODELS:
        raise ValueError(f"model={model!r}: expected one of {', '.join(MODELS)}")
    if data not in DATASETS:
        raise ValueError(f"data={data!r}: expected one of {', '.join(DATASETS)}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs={epochs!r}: expected None or an int >= 1")
    if isinstance(n_builtin, bool) or not isinstance(n_builtin, int) or n_builtin < N_SHOWN:
        raise ValueError(f"n_builtin={n_builtin!r}: expected an int >= {N_SHOWN}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with single_thread():  # small models: see deconvlab.tied._threads
        show = _BUILDERS[model](data, epochs, seed, out, n_builtin)
    for name, (picture, _) in show.pictures.items():
        write_atomic(out / f"{name}.png", lambda f, p=picture: p.save(f, format="PNG"))
    command = f"deconvlab tied --model {model} --data {data} --out {out}" + (
        f" --epochs {epochs}" if epochs else ""
    )
    command += f" --seed {seed}" if seed else ""
    blocks = _page(show, model, data, command)
    write_bytes_atomic(out / "index.md", to_markdown(blocks).encode())
    write_bytes_atomic(out / "index.html", to_html(blocks, show.title).encode())
    summary = {"model": model, "data": data, "seed": seed, "title": show.title, "answer": show.answer,
               "facts": dict(show.facts), "numbers": show.numbers}  # fmt: skip
    write_json_atomic(out / "summary.json", summary)
    return summary
