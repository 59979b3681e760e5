"""The report's sections: each computes its numbers, draws its figures and returns a JSON-ready dict.

Every section is a function of a :class:`~deconvlab.report.study.Study` and returns
``{"figures": [relative paths], ...numbers}``; ``deconvlab.report.build`` runs them through the stage
cache. The computations live in ``deconvlab.analyses``; here they are only called and drawn. A section
that reads images also returns ``samples`` (per split: the images used, of how many listed) and
``unreadable`` (the files it met that could not be read: split, path, reason), which the report gathers
into the Data section.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from deconvlab.analyses.correspondence import correspondence_table, occlude, random_boxes
from deconvlab.analyses.features import forward_with_features, rectified_tap
from deconvlab.analyses.filters import filter_stats
from deconvlab.analyses.invariance import TRANSFORMS, default_values, invariance_sweep
from deconvlab.analyses.probes import fit_linear_probe, pooled_features
from deconvlab.analyses.sensitivity import occlusion_panels, pointing_game
from deconvlab.analyses.topgrid import project_dataset_units, project_fast, strongest_channels
from deconvlab.report import figures as fig
from deconvlab.report.cache import fingerprint
from deconvlab.report.study import (
    Study,
    batch,
    class_groups,
    file_names,
    labels_of,
    picture,
    read_first,
    spread,
    spread_groups,
    unreadable_records,
)

STAGE_SCAN = ".stages/scan"  # the top-k scan's own resumable progress, a folder per model, data and options


def dataset_section(study: Study) -> dict:
    """The data's classes and split sizes, from the listing (nothing is decoded; the files the other
    sections could not read are added by ``deconvlab.report.build``)."""
    splits = {split: len(study.dataset(split)) for split in ("train", "val", "test")}
    classes = list(getattr(study.dataset("test"), "classes", []))
    return {"data": study.data, "classes": classes, "splits": splits, "figures": []}


# --- Fig. 5: invariance -----------------------------------------------------------------------------


def invariance_section(study: Study) -> dict:
    """Translation, scale and rotation sweeps of a few test images: feature distances and P(true class)."""
    data = study.dataset("test")
    labels = labels_of(data)
    sample = study.sample("test", class_groups(labels, np.unique(labels)[: study.options.invariance_images]))
    indices, images = sample.indices, sample.images
    taps = [study.first_conv, study.penultimate]
    sweeps = {}
    for kind in tqdm(TRANSFORMS, desc="invariance", disable=not study.options.progress, leave=False):
        values = default_values(kind, study.image_size)
        curves = invariance_sweep(study.model, images, labels[indices], kind, values, taps)
        sweeps[kind] = curves.as_dict()
    path, relative = study.figure_path("fig5-invariance")
    names = _class_names(data)
    _draw_invariance(path, sweeps, taps, [names[labels[i]] for i in indices])
    strip_path, strip_relative = study.figure_path("fig5-transformed")
    _draw_transformed(strip_path, images[0], study.image_size)
    return {
        "images": indices,
        "labels": labels[indices].tolist(),
        "layers": {"layer1": taps[0], "penultimate": taps[1]},
        "sweeps": sweeps,
        "samples": [sample.record()],
        "unreadable": sample.unreadable,
        "figures": [relative, strip_relative],
    }


def _draw_invariance(path: Path, sweeps: dict, taps: list[str], names: list[str]) -> None:
    units = {
        "translation": "vertical translation (pixels)",
        "scale": "scale",
        "rotation": "rotation (degrees)",
    }
    figure, axes = fig.new_figure(3, 3, size=3.2)
    for row, (kind, sweep) in enumerate(sweeps.items()):
        panels = [
            (sweep["distances"][taps[0]], f"layer 1 ({taps[0]}): distance"),
            (sweep["distances"][taps[1]], f"penultimate ({taps[1]}): distance"),
            (sweep["true_probability"], "P(true class)"),
        ]
        for col, (curves, title) in enumerate(panels):
            ax = axes[row][col]
            for name, curve in zip(names, curves, strict=True):
                ax.plot(sweep["values"], curve, marker=".", label=name)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(units[kind], fontsize=8)
            if col == 2:
                ax.set_ylim(-0.02, 1.02)
    axes[0][2].legend(fontsize=7)
    fig.save_figure(path, figure)


def _draw_transformed(path: Path, image: torch.Tensor, image_size: int) -> None:
    from deconvlab.data import denormalize

    rows = []
    for kind, transform in TRANSFORMS.items():
        values = default_values(kind, image_size)
        tiles = [denormalize(transform(image[None], v)[0]) for v in values]
        rows.append(fig.label(fig.tile(tiles, len(tiles), 48), kind))
    fig.save_png(path, fig.stack(rows))


# --- Fig. 6: first-layer filters --------------------------------------------------------------------


def filters_section(study: Study) -> dict:
    """The first conv layer's filters: RMS, dominant frequency, dead filters, aliasing."""
    conv = dict(study.model.named_modules())[study.all_convs[0]]
    weight = conv.weight.detach().cpu()
    stats = filter_stats(weight, stride=int(conv.stride[0]))
    grid_path, grid_relative = study.figure_path("fig6-filters")
    tiles = [_filter_picture(w) for w in weight]
    fig.save_png(grid_path, fig.tile(tiles, min(16, len(tiles)), 40))
    plot_path, plot_relative = study.figure_path("fig6-filter-stats")
    figure, axes = fig.new_figure(2, 1, size=3.6)
    axes[0][0].bar(range(len(stats.rms)), stats.rms, color=np.where(stats.dead, "red", "tab:blue"))
    axes[0][0].set_title("RMS per filter (red: dead)", fontsize=9)
    axes[0][1].scatter(stats.frequency, stats.rms, c=np.where(stats.aliased, "red", "tab:blue"), s=12)
    axes[0][1].axvline(stats.nyquist, color="grey", linestyle="--", label=f"Nyquist 1/(2x{stats.stride})")
    axes[0][1].set_xlabel("dominant frequency (cycles/pixel)", fontsize=8)
    axes[0][1].set_ylabel("RMS", fontsize=8)
    axes[0][1].set_title("frequency vs RMS (red: aliased)", fontsize=9)
    axes[0][1].legend(fontsize=7)
    fig.save_figure(plot_path, figure)
    return {
        "layer": study.all_convs[0],
        **stats.as_dict(),
        "note": stats.aliasing_note(),
        "figures": [grid_relative, plot_relative],
    }


def _filter_picture(weight: torch.Tensor) -> np.ndarray:
    """One filter (C_in, kh, kw) stretched to [0, 255]; RGB when it has 3 input channels, else grey."""
    w = (
        weight.double()
        if weight.shape[0] == 3
        else weight.double().mean(dim=0, keepdim=True).expand(3, -1, -1)
    )
    low, high = float(w.min()), float(w.max())
    scaled = (w - low) / (high - low) if high > low else torch.full_like(w, 0.5)
    return (scaled * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


# --- Fig. 7: occlusion ------------------------------------------------------------------------------


def occlusion_geometry(study: Study) -> tuple[int, int]:
    """The occluder's window and stride in pixels (options, else a quarter of the image and of that)."""
    window = study.options.occlusion_window or max(1, study.image_size // 4)
    stride = study.options.occlusion_stride or max(1, window // 4)
    return window, stride


def occlusion_section(study: Study) -> dict:
    """Fig. 7 for a few test images of each of (at most ``occlusion_classes``) classes, spread evenly
    over the classes, and the pointing game where the data has masks."""
    data = study.dataset("test")
    labels = labels_of(data)
    classes = np.unique(labels)
    chosen = classes[spread(len(classes), study.options.occlusion_classes)]
    sample = study.sample("test", class_groups(labels, chosen), study.options.occlusion_images_per_class)
    indices, images = sample.indices, sample.images
    window, stride = occlusion_geometry(study)
    panels = occlusion_panels(
        study.model, images, labels[indices], layer=study.last_conv, window=window, stride=stride
    )
    # the first image of each class drawn, for the first occlusion_shown classes
    firsts = [i for i in range(len(indices)) if i == 0 or labels[indices[i]] != labels[indices[i - 1]]]
    shown = firsts[: study.options.occlusion_shown]
    units = [(i, int(panels.strongest_channel[i]), *map(int, panels.strongest_position[i])) for i in shown]
    projections = project_fast(study.model, images, study.all_convs[-1], units).detach().cpu()
    result = {
        "layer": study.last_conv,
        "window": window,
        "stride": stride,
        "classes_used": len(chosen),
        "classes_listed": len(classes),
        "samples": [sample.record()],
        "unreadable": sample.unreadable,
        "images": indices,
        "labels": labels[indices].tolist(),
        "strongest_channel": panels.strongest_channel.tolist(),
        "min_true_probability": panels.true_probability.min(axis=(1, 2)).tolist(),
        "positions_y": panels.positions_y.tolist(),
        "positions_x": panels.positions_x.tolist(),
        "shown": {  # the maps drawn in the figure, by position in "images"
            str(i): {
                "activation": panels.activation[i].tolist(),
                "true_probability": panels.true_probability[i].tolist(),
                "predicted": panels.predicted[i].tolist(),
            }
            for i in shown
        },
    }
    if hasattr(data, "mask"):
        masks = np.stack([np.asarray(data.mask(i)) for i in indices])
        hits, centres = pointing_game(
            panels.true_probability, masks, panels.positions_y, panels.positions_x, (window, window)
        )
        result.update(
            pointing_game_hits=hits,
            pointing_game_centres=[list(c) for c in centres],
            pointing_game_accuracy=float(np.mean(hits)),
        )
    else:
        centres = [None] * len(indices)
    path, relative = study.figure_path("fig7-occlusion")
    output_names = getattr(study.model, "class_names", None) or _class_names(data)
    _draw_occlusion(
        path, data, indices, labels[indices], panels, projections, shown, centres, window, output_names
    )
    result["figures"] = [relative]
    return result


def _draw_occlusion(
    path, data, indices, labels, panels, projections, shown, centres, window, outputs
) -> None:
    """Fig. 7; ``outputs`` names the model's outputs (its weights' classes, else the dataset's)."""
    names = _class_names(data)
    py, px, stride = panels.positions_y, panels.positions_x, panels.stride[0]
    # each map value sits at its occluder's centre; a cell spans one stride
    extent = (
        px[0] + window / 2 - stride / 2,
        px[-1] + window / 2 + stride / 2,
        py[-1] + window / 2 + stride / 2,
        py[0] + window / 2 - stride / 2,
    )
    figure, axes = fig.new_figure(6, len(shown), size=2.3)
    for row, i in enumerate(shown):
        image = picture(data, indices[i])
        ax = axes[row]
        ax[0].imshow(image)
        if centres[i] is not None:
            cy, cx = centres[i]
            ax[0].add_patch(_square(cx - window / 2, cy - window / 2, window))
        ax[0].set_title(f"(a) {names[labels[i]]}; square: lowest (d)", fontsize=8)
        ax[1].imshow(panels.activation[i], extent=extent, cmap="viridis")
        ax[1].set_title(f"(b) map {panels.strongest_channel[i]} total", fontsize=8)
        ax[2].imshow(fig.projection_rgb(projections[row]))
        ax[2].set_title("(c) its projection", fontsize=8)
        ax[3].imshow(panels.true_probability[i], extent=extent, cmap="jet", vmin=0, vmax=1)
        ax[3].set_title("(d) P(correct class)", fontsize=8)
        ax[4].imshow(panels.predicted[i] % 20, extent=extent, cmap="tab20", vmin=0, vmax=19)
        _label_legend(ax[4], np.unique(panels.predicted[i]), outputs)
        ax[4].set_title("(e) most probable label", fontsize=8)
        ax[5].imshow(image)
        ax[5].imshow(panels.true_probability[i], extent=extent, cmap="jet", vmin=0, vmax=1, alpha=0.5)
        ax[5].set_title("(d) over the image", fontsize=8)
        for a in ax:
            a.set_xlim(0, image.shape[1])
            a.set_ylim(image.shape[0], 0)
            a.set_xticks([])
            a.set_yticks([])
    fig.save_figure(path, figure)


def _label_legend(ax, labels, names: list[str]) -> None:
    """A legend naming the colour of each label drawn with ``cmap="tab20", vmin=0, vmax=19``; a label
    beyond ``names`` (a model with more outputs than the dataset has classes) is shown by its index."""
    from matplotlib import colormaps
    from matplotlib.patches import Patch

    colours = colormaps["tab20"]
    shown = [int(label) for label in labels[:6]]
    handles = [
        Patch(color=colours(label % 20 / 19), label=names[label] if label < len(names) else f"output {label}")
        for label in shown
    ]
    ax.legend(handles=handles, fontsize=6, loc="lower left", framealpha=0.8)


def _square(x: float, y: float, side: float):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), side, side, fill=False, edgecolor="white", linewidth=1.5)


# --- Section 4.3: correspondence --------------------------------------------------------------------


RANDOM_DRAWS = 8  # draws of random occluders pooled into the control row


def correspondence_section(study: Study) -> dict:
    """Occlude the same parts in several images of the multi-part class, and random regions as control.

    The layers are the paper's layer 5 (the conv trunk's pooled output, which the classifier reads) and
    the penultimate layer (its layer 7). The control pools ``RANDOM_DRAWS`` draws of random boxes of the
    parts' size inside the object's bounding box, one box per image per draw.
    """
    data = study.dataset("test")
    if not hasattr(data, "parts"):
        return {"skipped": "the data has no part boxes (only the built-in dataset has them)", "figures": []}
    labels = labels_of(data)
    label = _multi_part_class(data, labels)
    candidates = np.flatnonzero(labels == label)
    parts = _small_parts(data, candidates)
    indices = _consistent_layout(data, candidates, parts, study.options.correspondence_images)
    images = batch(data, indices)
    boxes = {part: [data.parts(i)[part] for i in indices] for part in parts}
    sizes = [
        (round(np.mean([b[1] - b[0] for b in bs])), round(np.mean([b[3] - b[2] for b in bs])))
        for bs in zip(*boxes.values(), strict=True)
    ]
    regions = [_bounding_box(np.asarray(data.mask(i))) for i in indices]
    draws = [random_boxes(sizes, regions, seed=study.options.seed + d) for d in range(RANDOM_DRAWS)]
    taps = [study.trunk_output, study.penultimate]
    rows = correspondence_table(study.model, images, boxes, taps, random_draws=draws)
    path, relative = study.figure_path("sec43-correspondence")
    from deconvlab.data import denormalize

    shown = {**boxes, "random (first draw)": draws[0]}
    tiles = [denormalize(occlude(images, bs)) for bs in shown.values()]
    fig.save_png(
        path,
        fig.stack([fig.label(fig.tile(list(t), len(t), 64), p) for p, t in zip(shown, tiles, strict=True)]),
    )
    return {
        "class": _class_names(data)[label],
        "images": [int(i) for i in indices],
        "layers": {"last_conv": taps[0], "penultimate": taps[1]},
        "boxes": {part: [list(b) for b in bs] for part, bs in boxes.items()},
        "random_boxes": [[list(b) for b in draw] for draw in draws],
        "rows": rows,
        "samples": [{"split": "test", "used": len(indices), "listed": len(data)}],
        "unreadable": [],  # the built-in data: every image can be read
        "figures": [relative],
    }


def _multi_part_class(data, labels: np.ndarray) -> int:
    """The class whose objects have the most parts (the paper used dog faces: eyes and nose)."""
    counts = {
        int(label): len(data.parts(int(np.flatnonzero(labels == label)[0]))) for label in np.unique(labels)
    }
    return max(counts, key=lambda label: (counts[label], -label))


def _small_parts(data, indices: np.ndarray) -> list[str]:
    """The parts that are small details: on average less than a quarter of the object's bounding box."""
    areas = {}
    for i in indices[:20]:
        y0, y1, x0, x1 = _bounding_box(np.asarray(data.mask(int(i))))
        whole = max((y1 - y0) * (x1 - x0), 1)
        for part, (a, b, c, d) in data.parts(int(i)).items():
            areas.setdefault(part, []).append((b - a) * (d - c) / whole)
    return [part for part, shares in areas.items() if np.mean(shares) < 0.25]


def _consistent_layout(data, candidates: np.ndarray, parts: list[str], count: int) -> list[int]:
    """The ``count`` images whose parts lie closest to where they lie in a typical image of the class.

    The paper used 5 frontal, roughly centred dog faces, so the same part fell on the same features in
    every image. Here the layout of an image is the vector of its part centres in pixels; the images
    nearest to the median layout are the most alike in position, scale and rotation.
    """
    layouts = np.array(
        [
            [(a + b) / 2 for box in (data.parts(int(i))[p] for p in parts) for a, b in (box[:2], box[2:])]
            for i in candidates
        ]
    )
    distance = np.linalg.norm(layouts - np.median(layouts, axis=0), axis=1)
    return sorted(int(candidates[j]) for j in np.argsort(distance, kind="stable")[:count])


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return 0, mask.shape[0], 0, mask.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


# --- Table 7: linear probes -------------------------------------------------------------------------


def probes_section(study: Study) -> dict:
    """A linear classifier's test accuracy on each layer's features (conv maps pooled to 2x2)."""
    train, test = study.dataset("train"), study.dataset("test")
    taps = [*(rectified_tap(study.model, name) for name in study.all_convs), study.penultimate]
    train_idx, train_logits, train_features, train_met = _pooled(
        study, "train", study.options.probe_train_images, taps
    )
    test_idx, test_logits, test_features, test_met = _pooled(
        study, "test", study.options.probe_test_images, taps
    )
    train_y, test_y = labels_of(train)[train_idx], labels_of(test)[test_idx]
    classes = len(getattr(test, "classes", [])) or int(max(train_y.max(), test_y.max())) + 1
    rows = []
    for tap in tqdm(taps, desc="linear probes", disable=not study.options.progress, leave=False):
        probe = fit_linear_probe(train_features[tap], train_y, num_classes=classes)
        rows.append(
            {
                "layer": tap,
                "features": int(train_features[tap].shape[1]),
                "accuracy": probe.accuracy(test_features[tap], test_y),
            }
        )
    model_accuracy = float((test_logits.argmax(1).numpy() == test_y).mean())
    path, relative = study.figure_path("table7-probes")
    figure, axes = fig.new_figure(1, 1, size=4.5)
    axes[0][0].bar(range(len(rows)), [r["accuracy"] for r in rows], color="tab:blue")
    axes[0][0].axhline(model_accuracy, color="grey", linestyle="--", label="the model itself")
    axes[0][0].set_xticks(range(len(rows)), [r["layer"] for r in rows], rotation=45, fontsize=7)
    axes[0][0].set_ylabel("test accuracy of a linear probe")
    axes[0][0].set_ylim(0, 1)
    axes[0][0].legend(fontsize=7)
    fig.save_figure(path, figure)
    return {
        "rows": rows,
        "model_accuracy": model_accuracy,
        "train_images": len(train_idx),
        "test_images": len(test_idx),
        "samples": [
            {"split": "train", "used": len(train_idx), "listed": len(train)},
            {"split": "test", "used": len(test_idx), "listed": len(test)},
        ],
        "unreadable": train_met + test_met,
        "figures": [relative],
    }


def _pooled(study: Study, split: str, count: int, taps: list[str]):
    """The logits and pooled features of ``count`` readable images spread over ``split``, read a few
    batches at a time: (indices, logits, {tap: features}, unreadable files met)."""
    data, met = study.dataset(split), []
    indices, logits, pooled = [], [], {tap: [] for tap in taps}
    images = read_first(data, spread_groups(len(data), count), 1, met)
    step = study.options.batch_size * 4
    total, quiet = min(count, len(data)), not study.options.progress
    with tqdm(total=total, desc="probe features", disable=quiet, leave=False) as bar:
        while chunk := list(itertools.islice(images, step)):
            out, features = forward_with_features(
                study.model,
                torch.stack([image for _, image in chunk]),
                taps,
                batch_size=study.options.batch_size,
            )
            indices += [index for index, _ in chunk]
            logits.append(out)
            for tap in taps:
                pooled[tap].append(pooled_features(features[tap].clamp_min(0)))
            bar.update(len(chunk))
    if not indices:
        raise ValueError(f"split={split!r}: none of the {len(met)} images the probes tried could be read")
    features = {tap: torch.cat(chunks) for tap, chunks in pooled.items()}
    return np.asarray(indices, np.int64), torch.cat(logits), features, unreadable_records(split, met)


def _class_names(data) -> list[str]:
    classes = list(getattr(data, "classes", []))
    return classes or [str(c) for c in range(1000)]


def checkpoint_epochs(folder: Path) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of every ``epoch-XXX.pt`` file in ``folder``, by epoch.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("epoch-010.pt", "epoch-002.pt", "notes.txt"):
    ...     _ = (folder / name).write_text("")
    >>> [(e, p.name) for e, p in checkpoint_epochs(folder)]
    [(2, 'epoch-002.pt'), (10, 'epoch-010.pt')]
    """
    found = []
    for path in Path(folder).iterdir():
        match = re.fullmatch(r"epoch-(\d+)\.(pt|pth|safetensors)", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


# --- Fig. 2: top-9 grids ----------------------------------------------------------------------------

GRID_CELL = 40  # pixels per projection or patch in the grids
GRID_COLUMNS = 4  # channels per row of a layer's figure


def top9_section(study: Study) -> dict:
    """One streaming scan over the data; per layer, the strongest channels' top-k projected and drawn."""
    from deconvlab.analyses.scan import topk_scan

    data = study.dataset(study.options.scan_split)
    topk = topk_scan(
        study.model,
        data,
        study.layers,
        k=study.options.k,
        batch_size=study.options.batch_size,
        out=study.cache.root / STAGE_SCAN / fingerprint(study.key("top9")),
        resume=True,
        progress=study.options.progress,
        device=_device(study.model),
    )
    layers, figures = [], []
    for layer in tqdm(
        study.layers, desc="top-9 projections", disable=not study.options.progress, leave=False
    ):
        found = topk.layers[layer]
        channels = strongest_channels(found.values[:, 0], study.options.channels_per_layer)
        units, values = _top_units(found, channels)
        projected = project_dataset_units(study.model, data, layer, units, values, rules=study.options.rules)
        optimized = _optimize_channels(study, layer, channels, found.values[channels, 0])
        path, relative = study.figure_path(f"fig2-top9-{layer}")
        _draw_top9(path, data, projected, channels, study.options.rules, optimized)
        figures.extend([relative, *(o["image"] for o in optimized.values())])
        layers.append(_layer_record(projected, channels, relative, data, optimized))
    summary = _fraction_summary(layers)
    return {
        "split": study.options.scan_split,
        "images_scanned": topk.num_images,
        "layers": layers,
        **summary,
        "samples": [{"split": study.options.scan_split, "used": topk.num_images, "listed": len(data)}],
        "unreadable": unreadable_records(study.options.scan_split, topk.skipped),
        "figures": figures,
    }


def _optimize_channels(study: Study, layer: str, channels: list[int], best) -> dict[int, dict]:
    """Each channel's optimised image (saved as its own PNG) and the activation it reaches, against the
    channel's best over the scanned images (``best``, one per channel). ``optimize_steps=0``: none."""
    if not study.options.optimize_steps or not channels:
        return {}
    from deconvlab.report.optimized import optimized_images, ratio

    found = optimized_images(
        study.model, layer, channels, steps=study.options.optimize_steps, seed=study.options.seed
    )
    out = {}
    for item, dataset_max in zip(found, best, strict=True):
        path, relative = study.figure_path(f"fig2-optimized-{layer}-{item.channel}")
        fig.save_png(path, item.pixels)
        out[item.channel] = {
            "image": relative,
            "activation": item.activation,
            "objective": item.objective,
            "dataset_max": float(dataset_max),
            "ratio": ratio(item.activation, float(dataset_max)),
            "steps": item.steps,
            "seconds": round(item.seconds, 3),
            "pixels": item.pixels,  # drawn into the grid, dropped from the JSON
        }
    return out


def _top_units(found, channels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Rows (image, channel, y, x) and values of the listed channels' entries, channel by channel."""
    rows, values = [], []
    for channel in channels:
        for image, value, (y, x) in found.entries(channel):
            rows.append((image, channel, y, x))
            values.append(value)
    return np.array(rows, dtype=np.int64).reshape(-1, 4), np.array(values)


def _layer_record(projected, channels: list[int], figure: str, data, optimized: dict[int, dict]) -> dict:
    per_channel = []
    for channel in channels:
        mine = np.flatnonzero(projected.units[:, 1] == channel)
        sources, classes = file_names(data, projected.units[mine, 0])
        record = {
            "channel": channel,
            "images": projected.units[mine, 0].tolist(),
            "sources": sources,
            "classes": classes,
            "positions": projected.units[mine, 2:].tolist(),
            "values": projected.values[mine].tolist(),
            "boxes": projected.boxes[mine].tolist(),
            "fraction_in_field": projected.fraction_in_field[mine].tolist(),
        }
        if projected.fraction_on_object is not None:
            record["fraction_on_object"] = projected.fraction_on_object[mine].tolist()
        if channel in optimized:
            record["optimized"] = {k: v for k, v in optimized[channel].items() if k != "pixels"}
        per_channel.append(record)
    return {
        "layer": projected.layer,
        "field_size": list(projected.field_size),
        "channels": per_channel,
        **projected.summary(),
        "figure": figure,
    }


def _fraction_summary(layers: list[dict]) -> dict:
    """Means over every projected unit of every layer (each layer weighted by its units)."""
    units = sum(layer["units"] for layer in layers)
    out = {"fraction_in_field": sum(l["fraction_in_field"] * l["units"] for l in layers) / max(units, 1)}
    if layers and "fraction_on_object" in layers[0]:
        for key in ("fraction_on_object", "object_share_of_field"):
            out[key] = sum(l[key] * l["units"] for l in layers) / max(units, 1)
    return out


def _draw_top9(path: Path, data, projected, channels: list[int], rules, optimized: dict[int, dict]) -> None:
    size = projected.field_size
    blocks = []
    for channel in channels:
        mine = np.flatnonzero(projected.units[:, 1] == channel)
        grids = []
        for rule in rules:
            crops = [
                fig.crop(fig.projection_rgb(projected.projections[rule][m]), projected.boxes[m], size)
                for m in mine
            ]
            grids.append(fig.label(fig.tile(crops, 3, GRID_CELL), rule))
        patches = [fig.crop(picture(data, projected.units[m, 0]), projected.boxes[m], size) for m in mine]
        grids.append(fig.label(fig.tile(patches, 3, GRID_CELL), "patches"))
        if channel in optimized:
            shown = optimized[channel]
            times = "" if shown["ratio"] is None else f" {shown['ratio']:.1f}x"
            grids.append(fig.label(fig.tile([shown["pixels"]], 1, 3 * GRID_CELL + 4), f"optimised{times}"))
        blocks.append(fig.label(fig.side_by_side(grids, gap=4), f"channel {channel}"))
    rows = [
        fig.side_by_side(blocks[i : i + GRID_COLUMNS], gap=16) for i in range(0, len(blocks), GRID_COLUMNS)
    ]
    fig.save_png(path, fig.stack(rows, gap=12))


# --- Fig. 4: feature evolution ----------------------------------------------------------------------


def evolution_section(study: Study, channels: dict[str, list[int]]) -> dict:
    """For each checkpoint, each chosen channel's strongest activation over (part of) the training set,
    projected. Each checkpoint is its own cached step, so an interrupted run resumes between them."""
    if study.checkpoints is None:
        return {"skipped": "no --checkpoints folder given", "figures": []}
    epochs = checkpoint_epochs(study.checkpoints)
    if not epochs:
        return {"skipped": f"no epoch-XXX.pt files in {study.checkpoints}", "figures": []}
    train = study.dataset("train")
    subset = torch.utils.data.Subset(train, spread(len(train), study.options.evolution_images).tolist())
    chosen = {layer: channels[layer][: study.options.evolution_channels] for layer in study.layers}
    steps = []
    for epoch, path in tqdm(
        epochs, desc="feature evolution", disable=not study.options.progress, leave=False
    ):
        key = study.key("evolution-step", checkpoint=_file_digest(path), channels=chosen)
        steps.append(
            study.cache.run(
                f"evolution-epoch-{epoch:03d}",
                key,
                lambda e=epoch, p=path: _evolution_step(study, e, p, subset, chosen),
            )
        )
    figures = []
    for layer in study.layers:
        columns = [
            fig.label(_read_png(study.out / step["strips"][layer]), f"ep {step['epoch']}") for step in steps
        ]
        path, relative = study.figure_path(f"fig4-evolution-{layer}")
        fig.save_png(path, fig.side_by_side(columns, gap=4))
        figures.append(relative)
    unreadable = list({item["path"]: item for step in steps for item in step["unreadable"]}.values())
    return {
        "layers": list(study.layers),
        "epochs": [e for e, _ in epochs],
        "images": len(subset) - len(unreadable),
        "channels": chosen,
        "steps": steps,
        "samples": [{"split": "train", "used": len(subset) - len(unreadable), "listed": len(train)}],
        "unreadable": unreadable,
        "figures": figures,
    }


def _evolution_step(study: Study, epoch: int, path: Path, subset, chosen: dict[str, list[int]]) -> dict:
    import copy

    from deconvlab.analyses.scan import topk_scan
    from deconvlab.models import load_weights

    snapshot = copy.deepcopy(study.model)
    load_weights(snapshot, path)
    snapshot.eval()
    topk = topk_scan(
        snapshot,
        subset,
        study.layers,
        k=1,
        batch_size=study.options.batch_size,
        progress=False,
        device=_device(snapshot),
    )
    strips, units = {}, {}
    for layer in study.layers:
        rows, values = _top_units(topk.layers[layer], chosen[layer])
        projected = project_dataset_units(snapshot, subset, layer, rows, values)
        crops = [
            fig.crop(
                fig.projection_rgb(projected.projections["deconvnet"][m]),
                projected.boxes[m],
                projected.field_size,
            )
            for m in range(len(rows))
        ]
        strip_path, strips[layer] = study.figure_path(f"evolution/epoch-{epoch:03d}-{layer}")
        fig.save_png(strip_path, fig.tile(crops, 1, GRID_CELL))
        units[layer] = {"units": rows.tolist(), "values": values.tolist()}
    return {
        "epoch": epoch,
        "strips": strips,
        "units": units,
        "unreadable": unreadable_records("train", topk.skipped),
        "figures": list(strips.values()),
    }


def _device(model) -> torch.device:
    """Where the model's parameters are (the scan would otherwise move it to a GPU if there is one)."""
    return next(model.parameters()).device


def _file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def checkpoint_digests(folder: Path | None) -> list[tuple[int, str]]:
    """``(epoch, content hash)`` of each checkpoint in ``folder`` (none without one): the evolution key."""
    return [(epoch, _file_digest(path)) for epoch, path in checkpoint_epochs(folder)] if folder else []


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


# --- sanity checks (Adebayo et al. 2018) -------------------------------------------------------------


def sanity_section(study: Study) -> dict:
    """``deconvlab sanity``'s checks on a few validation images: the last layer with parameters (the
    logits: each image's predicted class), every rule; numbers as ``SanityChecks.to_json``."""
    from deconvlab.analyses import sanity

    if study.options.sanity_images < 2:
        return {
            "skipped": "sanity_images is below 2 (the sensitivity check compares two images)",
            "figures": [],
        }
    data = study.dataset(study.options.scan_split)
    sample = study.sample(study.options.scan_split, spread_groups(len(data), study.options.sanity_images))
    indices = sample.indices
    inputs = sample.images.to(_device(study.model))
    layer = sanity.parametrised_layers(study.model, inputs, "")[-1]
    result = sanity.sanity_checks(study.model, inputs, layer, seed=study.options.seed)
    figures = []
    for name, figure in sanity.figures(result).items():
        path, relative = study.figure_path(f"sanity-{name}")
        fig.save_figure(path, figure)
        figures.append(relative)
    sources, _ = file_names(data, indices)
    return {
        "split": study.options.scan_split,
        "images": indices,
        "sources": sources,
        **result.to_json(),
        "samples": [sample.record()],
        "unreadable": sample.unreadable,
        "figures": figures,
    }
