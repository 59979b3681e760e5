"""``index.html`` from ``report.json``: one static page, relative image paths, no script, no server.

Every number on the page comes from the report dict, so the page and ``report.json`` cannot disagree.

>>> page = render({"title": "t", "model": "m", "data": "d", "checks": []})
>>> page.startswith("<!DOCTYPE html>") and "<img" not in page
True
>>> image_sources('<p><img src="figures/a.png" alt=""><img src="b.png"></p>')
['figures/a.png', 'b.png']
"""

from __future__ import annotations

import re
from html import escape

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; } td, th { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f4f4f4; }
.pass { color: #070; font-weight: bold; } .fail { color: #b00; font-weight: bold; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.4em 0; } .note { color: #555; font-size: 0.92em; }
.captions td.files { font-size: 0.8em; font-family: monospace; }
"""


def render(report: dict) -> str:
    """The whole page, from a report laid out as ``deconvlab.report.build`` writes ``report.json``."""
    sections = dict(report)
    if "correspondence_setup" in report:  # the rows are top-level; the table needs both
        sections["correspondence"] = {
            **report["correspondence_setup"],
            "rows": report.get("correspondence", []),
        }
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(report['title'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(report['title'])}</h1>",
        f"<p>Model <b>{escape(str(report['model']))}</b> on data <b>{escape(str(report['data']))}</b>. "
        "Every number here is also in <a href='report.json'>report.json</a>.</p>",
        _checks(report.get("checks", [])),
    ]
    for key, draw in SECTIONS:
        if key in sections:
            parts.append(draw(sections[key]))
    parts.append("</body></html>")
    return "\n".join(parts)


def image_sources(page: str) -> list[str]:
    """Every ``src`` of an ``<img>`` in ``page``, in order."""
    return re.findall(r'<img [^>]*src="([^"]+)"', page)


def _checks(checks: list[dict]) -> str:
    if not checks:
        return ""
    rows = "".join(
        f"<tr><td>{escape(c['name'])}</td><td>{_number(c['value'])}</td><td>{escape(c['rule'])}</td>"
        f"<td class='{'pass' if c['passed'] else 'fail'}'>{'pass' if c['passed'] else 'FAIL'}</td></tr>"
        for c in checks
    )
    return (
        "<h2>Checks against ground truth</h2><table><tr><th>check</th><th>value</th><th>rule</th>"
        f"<th></th></tr>{rows}</table>"
    )


def _image(src: str, alt: str) -> str:
    return f'<p><img src="{escape(src)}" alt="{escape(alt)}"></p>'


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return escape(str(value))


def _skipped(section: dict) -> str:
    return f"<p class='note'>Not drawn: {escape(section['skipped'])}.</p>" if "skipped" in section else ""


def _samples(section: dict) -> str:
    """How many images the section read, of how many each split lists, and the unreadable files it met.

    >>> _samples({"samples": [{"split": "test", "used": 5, "listed": 1200}], "unreadable": [{}]})
    "<p class='note'>Images read: 5 of the test split's 1200; 1 unreadable file passed over (see Data).</p>"
    """
    if "samples" not in section:
        return ""
    read = "; ".join(
        f"{s['used']} of the {escape(s['split'])} split's {s['listed']}" for s in section["samples"]
    )
    met = len(section.get("unreadable", []))
    passed = f"; {met} unreadable file{'s' if met != 1 else ''} passed over (see Data)" if met else ""
    return f"<p class='note'>Images read: {read}{passed}.</p>"


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_number(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _dataset(section: dict) -> str:
    splits = ", ".join(f"{name}: {count}" for name, count in section["splits"].items())
    skipped = section["skipped"]
    rows = [[s["split"], s["path"], s["reason"], ", ".join(s.get("sections", []))] for s in skipped]
    listing = (
        _table(["split", "file", "reason", "met by"], rows) if skipped else "<p>No file was skipped.</p>"
    )
    return (
        f"<h2>Data</h2><p>{escape(str(section['data']))}: {len(section['classes'])} classes "
        f"({escape(', '.join(section['classes']))}); images per split: {escape(splits)}.</p>"
        "<p class='note'>The splits are listed, not decoded: the top-9 scan reads its split once, streamed, "
        "and every other section a sample of bounded size (each says how many images it read). A file "
        "that cannot be read is passed over for the next candidate.</p>"
        f"<h3>Skipped files ({len(skipped)}): the unreadable files the sections met</h3>{listing}"
    )


def _top9(section: dict) -> str:
    out = [
        "<h2>Fig. 2: the strongest activations of the data, projected</h2>",
        f"<p>One streaming scan over the {escape(section['split'])} split "
        f"({section['images_scanned']} images) found each channel's top 9. Each projection is cropped "
        "to its unit's receptive field and shown beside the image patch "
        "under that field (grey where the field leaves the image).</p>",
        _samples(section),
    ]
    has_object = "fraction_on_object" in section
    header = ["layer", "units", "energy in receptive field"]
    header += ["energy on the object", "object's share of the field"] if has_object else []
    rows = []
    for layer in section["layers"]:
        row = [layer["layer"], layer["units"], layer["fraction_in_field"]]
        row += [layer["fraction_on_object"], layer["object_share_of_field"]] if has_object else []
        rows.append(row)
    out.append(_table(header, rows))
    if any("optimized" in c for layer in section["layers"] for c in layer["channels"]):
        out.append(
            "<p>Beside each channel, its optimised image (<code>deconvlab.analyses.optimize</code>, "
            "gradient ascent on the pixels with Yosinski et al.'s regularisers), shown as 8-bit pixels. "
            "Optimised: the largest value of the channel's map on that picture; dataset best: the largest "
            "over the scanned images (the first of the top 9); the ratio of the two.</p>"
        )
    for layer in section["layers"]:
        out.append(
            f"<h3>{escape(layer['layer'])}</h3>{_image(layer['figure'], 'top-9 of ' + layer['layer'])}"
            + _top9_captions(layer)
        )
    return "".join(out)


def _top9_captions(layer: dict) -> str:
    """Per channel: the dataset's best, the optimised image's activation and ratio, and the top-9 files
    (strongest first; the image's index where the data name no file)."""
    rows = []
    for channel in layer["channels"]:
        optimized = channel.get("optimized")
        files = [
            f"{escape(source if source is not None else f'image {index}')}"
            + (f" ({escape(name)})" if name is not None else "")
            for index, source, name in zip(
                channel["images"], channel.get("sources", []), channel.get("classes", []), strict=False
            )
        ]
        numbers = [channel["values"][0] if channel["values"] else None]
        numbers += [optimized["activation"], optimized["ratio"]] if optimized else [None, None]
        cells = "".join(f"<td>{'' if v is None else _number(v)}</td>" for v in numbers)
        rows.append(
            f"<tr><td>{channel['channel']}</td>{cells}<td class='files'>{'<br>'.join(files)}</td></tr>"
        )
    return (
        "<table class='captions'><tr><th>channel</th><th>dataset best</th><th>optimised</th><th>ratio</th>"
        f"<th>top-9 files, strongest first</th></tr>{''.join(rows)}</table>"
    )


def _evolution(section: dict) -> str:
    out = ["<h2>Fig. 4: feature evolution during training</h2>", _skipped(section)]
    if "skipped" not in section:
        out.append(
            f"<p>For each checkpoint (epochs {escape(', '.join(map(str, section['epochs'])))}), "
            f"each channel's strongest activation over {section['images']} training images, projected. "
            "Rows are channels, "
            "columns epochs.</p>" + _samples(section)
        )
        for layer, src in zip(section["layers"], section["figures"], strict=True):
            out.append(f"<h3>{escape(layer)}</h3>{_image(src, 'feature evolution of ' + layer)}")
    return "".join(out)


def _invariance(section: dict) -> str:
    layers = section["layers"]
    return (
        "<h2>Fig. 5: invariance to translation, scale and rotation</h2>"
        f"<p>Euclidean distance of the layer-1 ({escape(layers['layer1'])}) and penultimate "
        f"({escape(layers['penultimate'])}) feature vectors from the untransformed image's, and the "
        "probability of the true class.</p>"
        + _samples(section)
        + "".join(_image(src, "invariance") for src in section["figures"])
    )


def _filters(section: dict) -> str:
    return (
        f"<h2>Fig. 6: first-layer filters ({escape(section['layer'])})</h2>"
        f"<p>{len(section['rms'])} filters; {section['dead_count']} dead (RMS below 5% of the median); "
        f"{escape(section['note'])}</p>" + "".join(_image(src, "filters") for src in section["figures"])
    )


def _occlusion(section: dict) -> str:
    pointing = (
        f"<p>Pointing game: the least probable occluder position lies on the object in "
        f"{sum(section['pointing_game_hits'])} of {len(section['pointing_game_hits'])} images "
        f"(accuracy {section['pointing_game_accuracy']:.3f}).</p>"
        if "pointing_game_accuracy" in section
        else ""
    )
    return (
        f"<h2>Fig. 7: occlusion sensitivity</h2><p>A {section['window']}-pixel grey square every "
        f"{section['stride']} pixels. (b) total activation of the strongest map of "
        f"{escape(section['layer'])}; (c) its projection; (d) probability of the correct class; "
        "(e) most probable label.</p>"
        + (
            f"<p class='note'>{section['classes_used']} of the {section['classes_listed']} classes, spread "
            "evenly over them (option <code>occlusion_classes</code>).</p>"
            if "classes_used" in section
            else ""
        )
        + _samples(section)
        + pointing
        + "".join(_image(src, "occlusion") for src in section["figures"])
    )


def _correspondence(section: dict) -> str:
    if "skipped" in section:
        return "<h2>Section 4.3: correspondence</h2>" + _skipped(section)
    layers = section["layers"]
    columns = [layers["last_conv"], layers["penultimate"]]
    parts = list(dict.fromkeys(row["part"] for row in section["rows"]))
    cell = {(r["part"], r["layer"]): f"{r['mean']:.3f} ± {r['std']:.3f}" for r in section["rows"]}
    rows = [[part, *(cell[(part, layer)] for layer in columns)] for part in parts]
    return (
        "<h2>Section 4.3: correspondence</h2>"
        f"<p>The same part occluded in {len(section['images'])} images of class "
        f"<b>{escape(section['class'])}</b>, and random regions of the object as control. Mean feature "
        "sign change Δ (normalised Hamming distance of sign(ε) over pairs of images, ± std); lower means "
        "the layer changes the same way whichever image the part is hidden in. The random row pools "
        f"{len(section.get('random_boxes', []))} draws of random boxes.</p>"
        + _samples(section)
        + _table(["occluded", f"last conv layer, pooled ({columns[0]})", f"penultimate ({columns[1]})"], rows)
        + "".join(_image(src, "occluded parts") for src in section["figures"])
    )


def _probes(section: dict) -> str:
    rows = [[r["layer"], r["features"], r["accuracy"]] for r in section["rows"]]
    return (
        "<h2>Table 7: linear probes per layer</h2>"
        f"<p>Multinomial logistic regression on each layer's features (conv maps average-pooled to 2x2), "
        f"trained on {section['train_images']} training images, tested on {section['test_images']}; "
        f"the model itself scores {section['model_accuracy']:.3f}.</p>"
        + _samples(section)
        + _table(["layer", "features", "test accuracy"], rows)
        + "".join(_image(src, "probes") for src in section["figures"])
    )


def _sanity(section: dict) -> str:
    title = "<h2>Sanity checks: how much of a projection comes from the weights?</h2>"
    if "skipped" in section:
        return title + _skipped(section)
    measures = ["spearman", "spearman_abs", "ssim", "hog"]
    names = [
        escape(source or str(i)) for i, source in zip(section["images"], section["sources"], strict=True)
    ]
    out = [
        title,
        f"<p>Adebayo et al. 2018 on {len(section['images'])} {escape(section['split'])} images "
        f"({', '.join(names)}): the layers that feed <b>{escape(section['layer'])}</b> are re-drawn "
        "(normal, with each trained tensor's mean and spread) and the same units (each image's strongest, "
        f"{escape(str(section['units']))}) projected again. Each number is the similarity to the trained "
        "projection, averaged over the units; near 1: the map does not depend on those weights "
        "(Nie et al. 2018, Sixt et al. 2020 explain why deconvnet and guided backprop barely change).</p>",
        _samples(section),
    ]
    figures = iter(section["figures"])
    for mode in ("cascading", "independent"):
        out.append(f"<h3>{mode} randomisation</h3>")
        out.extend(_image(next(figures), f"{mode} {what}") for what in ("maps", "curves"))
        rows = [
            [rule, step["layer"], *("n/a" if step[m] is None else step[m] for m in measures)]
            for rule, steps in section[mode].items()
            for step in steps
        ]
        out.append(_table(["rule", "re-drawn", *measures], rows))
    sensitivity = section["sensitivity"]
    out.append(
        "<h3>Unit sensitivity</h3><p>Different units (channels "
        f"{escape(str(sensitivity['channels']))}) of the same image, against the same unit on different "
        "images (Nie et al. 2018).</p>" + _image(next(figures), "sensitivity")
    )
    rows = [
        [
            rule,
            pairs.replace("_", " "),
            *("n/a" if v is None else v for v in (sensitivity[rule][pairs][m] for m in measures)),
        ]
        for rule in section["cascading"]
        for pairs in ("same_image", "same_unit")
    ]
    out.append(_table(["rule", "pairs", *measures], rows))
    return "".join(out)


SECTIONS = (
    ("dataset", _dataset),
    ("top9", _top9),
    ("evolution", _evolution),
    ("invariance", _invariance),
    ("filters", _filters),
    ("occlusion", _occlusion),
    ("correspondence", _correspondence),
    ("probes", _probes),
    ("sanity", _sanity),
)
