"""What the model-backed pages ask for, computed by the library and packed as JSON.

Each function takes the :class:`~deconvlab.serve.explorer.Explorer` and already type-checked
parameters, checks them against the loaded model (a layer that exists, units inside its output,
an occluder that fits) and calls the library, whose hooks act only in the calling thread, so that
requests on other threads can use the model at the same time: ``deconvlab.engine.project`` for
projections, the engine's ``forward_to`` for activation maps, ``deconvlab.analyses.occlusion.occlusion_map``
for occlusion.

Pictures are drawn as the HTML report draws them (``deconvlab.report.figures``): each projection
scaled around mid-grey by its own peak (the 99.5th percentile of its absolute values), patches cut to
the receptive field and padded with grey where the field leaves the image.

>>> occlusion_positions(64, 16, 4)   # (floor((64 - 16) / 4) + 1) ** 2
169
"""

from __future__ import annotations

import base64

import numpy as np
import torch

from deconvlab.report.figures import crop, projection_rgb, tile
from deconvlab.serve.explorer import Explorer, LayerInfo
from deconvlab.serve.images import data_url
from deconvlab.serve.params import ApiError

RULES = ("deconvnet", "guided", "gradient")


def check_position(info: LayerInfo, channel: int, y: int, x: int, where: str = "unit") -> None:
    """422 unless (channel, y, x) is inside the layer's output."""
    limits = {"channel": (channel, info.channels), "y": (y, info.height), "x": (x, info.width)}
    for name, (value, size) in limits.items():
        if not 0 <= value < size:
            raise ApiError(
                f"{where}.{name}={value}: out of range; layer {info.name!r} has output "
                f"({info.channels}, {info.height}, {info.width}), so {name} must be in [0, {size})"
            )


def units(explorer: Explorer, *, layer: str) -> dict:
    """Every channel's top-k dataset units from the scan, channels with the strongest unit first; each
    unit names its image's file and class (``source`` and ``class``: null where the data name none).
    ``skipped``: the files the scan could not read, with the reason."""
    topk = explorer.topk()
    info = explorer.session().layer(layer)
    lists = topk.layers[info.name]
    dataset = explorer.session().dataset
    channels = [
        {
            "channel": channel,
            "units": [
                {"image": f"dataset:{image}", "value": value, "y": y, "x": x, **_file_name(dataset, image)}
                for image, value, (y, x) in lists.entries(channel)
            ],
        }
        for channel in range(info.channels)
    ]
    channels = [channel for channel in channels if channel["units"]]
    channels.sort(key=lambda channel: -channel["units"][0]["value"])
    skipped = [{"path": path, "reason": reason} for path, reason in topk.skipped]
    return {
        "layer": info.name,
        "k": topk.k,
        "num_images": topk.num_images,
        "channels": channels,
        "skipped": skipped,
    }


def _file_name(dataset, index: int) -> dict:
    """``{"source": dataset.source(i), "class": dataset.class_name(i)}``, None where the data do not say."""
    from deconvlab.report.study import file_names

    (source,), (name,) = file_names(dataset, [index])
    return {"source": source, "class": name}


def unit_grid(explorer: Explorer, *, layer: str, channel: int, cell: int = 48) -> np.ndarray:
    """A channel's top-k image patches (receptive fields, strongest first) tiled 3 per row."""
    topk = explorer.topk()
    session = explorer.session()
    info = session.layer(layer)
    if channel >= info.channels:
        raise ApiError(f"channel={channel}: out of range; layer {layer!r} has {info.channels} channels")
    field = info.receptive_field
    patches = [
        crop(explorer.image(f"dataset:{image}"), field.box(y, x), size=field.size)
        for image, _, (y, x) in topk.layers[layer].entries(channel)
    ]
    if not patches:
        raise ApiError(f"channel={channel}: no scanned image activates it", status=404)
    return tile(patches, columns=3, cell=cell)


def project_units(
    explorer: Explorer,
    *,
    layer: str,
    units: list[dict],
    rule: str,
    crop: bool,
    values: bool,
    randomized: bool,
) -> dict:
    """Projections of ``units`` of ``layer`` by ``rule``, with receptive-field boxes and activations;
    ``randomized``: by the model with every layer re-drawn (``Explorer.randomized_model``)."""
    from deconvlab.data.transforms import normalize, statistics
    from deconvlab.engine import project

    session = explorer.session()
    info = session.layer(layer)
    for index, unit in enumerate(units):
        check_position(info, unit["channel"], unit["y"], unit["x"], where=f"units[{index}]")
    refs = list(dict.fromkeys(unit["image"] for unit in units))
    images = [explorer.image(ref) for ref in refs]
    rows = torch.tensor([[refs.index(u["image"]), u["channel"], u["y"], u["x"]] for u in units])
    inputs = normalize(np.stack(images), *statistics(session.model))
    model = explorer.randomized_model() if randomized else session.model
    with explorer.model():
        projections = project(model, inputs, layer, rows, rule=rule)
    activations = projections.unit_activations.tolist()
    return {
        "layer": layer,
        "rule": rule,
        "projections": [
            _projection_json(
                unit,
                images[row[0]],
                projection,
                activation,
                info.receptive_field.box(unit["y"], unit["x"]),
                crop,
                values,
            )
            for unit, row, projection, activation in zip(
                units, rows.tolist(), projections.numpy(), activations, strict=True
            )
        ],
    }


def _projection_json(unit, image, projection, activation, box, crop, values) -> dict:
    y0, y1, x0, x1 = (int(v) for v in box)
    shown = projection[:, y0:y1, x0:x1] if crop else projection
    out = {
        **unit,
        "activation": activation,
        "box": [y0, y1, x0, x1],
        "projection": data_url(projection_rgb(torch.from_numpy(shown))),
        "blank": not bool(np.any(shown)),
    }
    if crop:
        out["patch"] = data_url(image[y0:y1, x0:x1])
    if values:
        out["values"] = projection.tolist()
    return out


def activation_maps(explorer: Explorer, *, image: str, layer: str) -> dict:
    """The rectified activation maps of ``layer`` for one image, as uint8 (0 = none, 255 = the layer's max).

    ``maps`` is base64 of C x H x W bytes in C order; ``channel_max`` and ``strongest`` (y, x) per channel.
    """
    from deconvlab.data.transforms import normalize, statistics
    from deconvlab.engine._model import forward_to

    session = explorer.session()
    info = session.layer(layer)
    pixels = explorer.image(image)
    with explorer.model(), torch.no_grad():
        maps = (
            forward_to(session.model, layer, normalize(pixels, *statistics(session.model))[None])[0]
            .clamp(min=0)
            .numpy()
        )
    scale = float(maps.max())
    quantised = np.rint(255 * maps / scale if scale > 0 else maps).astype(np.uint8)
    flat = maps.reshape(len(maps), -1)
    strongest = np.stack(np.unravel_index(flat.argmax(axis=1), maps.shape[1:]), axis=1)
    return {
        "image": image,
        "layer": info.name,
        "shape": list(maps.shape),
        "scale": scale,
        "maps": base64.b64encode(quantised.tobytes()).decode("ascii"),
        "channel_max": flat.max(axis=1).tolist(),
        "strongest": strongest.tolist(),
    }


def occlusion_positions(size: int, window: int, stride: int) -> int:
    """How many occluder positions a square image gets: ``(floor((size - window) / stride) + 1) ** 2``."""
    return ((size - window) // stride + 1) ** 2


def occlusion(explorer: Explorer, *, image: str, window: int, stride: int) -> dict:
    """The paper's Fig. 7 panels for one image: (b) activation, (c) projection, (d) probability, (e) label.

    The feature map is the last offered layer's channel that is strongest (largest total activation)
    for the unoccluded image; the class is the image's true label when it has one, else the
    unoccluded prediction. The occluder is filled with 0 in normalised space (the mean colour).
    """
    from deconvlab.analyses.occlusion import occlusion_map
    from deconvlab.data.transforms import normalize, statistics
    from deconvlab.engine import project
    from deconvlab.engine._model import forward_to

    session = explorer.session()
    if window > session.size:
        raise ApiError(f"window={window}: larger than the image ({session.size}x{session.size})")
    count = occlusion_positions(session.size, window, stride)
    if count > explorer.config.max_occlusion_positions:
        raise ApiError(
            f"window={window}, stride={stride}: {count} occluder positions; the limit is "
            f"{explorer.config.max_occlusion_positions} (raise the stride)"
        )
    layer = list(session.layers)[-1]
    info = session.layer(layer)
    x = normalize(explorer.image(image), *statistics(session.model))[None]
    label = explorer.label(image)
    with explorer.model():
        with torch.no_grad():
            logits, features = session.model(x), forward_to(session.model, layer, x)
        totals = features[0].sum(dim=(1, 2))
        channel = int(totals.argmax())
        fmap = features[0, channel]
        y, xx = divmod(int(fmap.argmax()), fmap.shape[1])
        projection = project(session.model, x, layer, torch.tensor([[0, channel, y, xx]]))[0].numpy()
    result = occlusion_map(session.model, x, window=window, stride=stride, baseline=0.0, layer=layer)
    probabilities = torch.softmax(result.logits[0].double(), dim=-1)
    prediction = int(logits[0].argmax())
    target = prediction if label is None else label
    return {
        "image": image,
        "window": window,
        "stride": stride,
        "layer": layer,
        "channel": channel,
        "positions_y": result.positions_y.tolist(),
        "positions_x": result.positions_x.tolist(),
        "activation": result.activations[0, :, :, channel].tolist(),
        "probability": probabilities[..., target].tolist(),
        "label": probabilities.argmax(dim=-1).tolist(),
        "classes": list(session.dataset.classes),
        "target": target,
        "target_is_true_label": label is not None,
        "unoccluded": {
            "activation": float(totals[channel]),
            "probability": float(torch.softmax(logits[0].double(), dim=0)[target]),
            "prediction": prediction,
        },
        "projection": data_url(projection_rgb(torch.from_numpy(projection))),
        "box": [int(v) for v in info.receptive_field.box(y, xx)],
    }


class OptimizationJob:
    """One channel's optimised image, computed in the slow lane; ``as_json()`` is its state so far."""

    def __init__(self, layer: str, channel: int, total: int, dataset_max: float) -> None:
        self.layer, self.channel, self.total, self.dataset_max = layer, channel, total, dataset_max
        self.state, self.done, self.began, self.result = "queued", 0, None, {}

    def run(self, explorer: Explorer) -> None:
        import time

        from deconvlab.report.optimized import optimized_images, ratio

        self.state, self.began = "running", time.perf_counter()
        try:
            (found,) = optimized_images(
                explorer.optimizer_model(),
                self.layer,
                [self.channel],
                steps=self.total,
                progress=lambda done, _: setattr(self, "done", done),
            )
        except Exception as error:  # shown beside the card; another request starts it again
            self.result, self.state = {"error": f"{type(error).__name__}: {error}"}, "error"
            raise
        self.result = {
            "image": data_url(found.pixels),
            "activation": found.activation,
            "objective": found.objective,
            "ratio": ratio(found.activation, self.dataset_max),
            "steps": found.steps,
            "seconds": round(time.perf_counter() - self.began, 3),
        }
        self.state = "done"

    def as_json(self) -> dict:
        out = {
            "layer": self.layer,
            "channel": self.channel,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "dataset_max": self.dataset_max,
            **self.result,
        }
        return out


def optimized_image(explorer: Explorer, *, layer: str, channel: int) -> dict:
    """A channel's optimised image: started in the slow lane on the first request (a 503 when the lane
    is full), then its progress, then the image and the activation it reaches (measured on its 8-bit
    pixels) against the channel's best over the scanned images. Kept per model, layer and channel."""
    topk = explorer.topk()
    session = explorer.session()
    info = session.layer(layer)
    if channel >= info.channels:
        raise ApiError(f"channel={channel}: out of range; layer {layer!r} has {info.channels} channels")
    key = (session.loaded.name, layer, channel)
    with explorer.optimizations_lock:
        job = explorer.optimizations.get(key)
        if job is None or job.state == "error":
            best = float(topk.layers[layer].values[channel, 0])
            job = OptimizationJob(layer, channel, explorer.config.optimize_steps, best)
            explorer.lanes["slow"].submit(job.run, explorer)
            explorer.optimizations.put(key, job)
    return job.as_json()
