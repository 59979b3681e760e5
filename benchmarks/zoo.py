"""Compatibility table: every capability of deconvlab on torchvision's zoo and on timm CNNs of every family.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/zoo.py                 # every model not yet cached
    .venv/bin/python benchmarks/zoo.py --models torchvision:resnet18,timm:dla34 --rerun
    .venv/bin/python benchmarks/zoo.py --family efficientnet   # specs containing "efficientnet"
    .venv/bin/python benchmarks/zoo.py --reverse               # costliest first: a second process
    .venv/bin/python benchmarks/zoo.py --table-only            # rewrite docs/compatibility.md from the cache
    .venv/bin/python benchmarks/zoo.py --quick                 # the test suite's subset at its small sizes
    .venv/bin/python benchmarks/zoo.py --size 96 --models ...  # other input sizes

Each model (random weights, eval mode, one image of ``--size`` pixels, default 224, 299 for the
Inception nets, timm's ``pretrained_cfg`` size for timm) is probed at one layer (``probe_layer``: the
output of the stage at 1/8 of the input) and every capability is tried on its own, so one failure never
stops the run. A cell is ``✓``, ``refused: <message>`` (a ValueError raised by deconvlab, which says
why), ``✗ <Error>: <message>`` (anything else) or ``✗ differs by X`` (a wrong number; X relative to the
reference's largest magnitude). The references are computed here, without deconvlab:

- strongest units: each channel's maximum of the layer's output (a forward hook);
- receptive field: the input gradient of each projected unit is zero outside its field's box;
- projections (``seed="one"``, the two channels with the strongest maxima): the gradient rule equals
  ``torch.autograd.grad`` of the unit; deconvnet and guided in the mirror engine equal the autograd
  engine's when both run (the engine's own tests check the rules against Captum);
- occlusion (window 1/4 of the image, stride 1/2: 4 positions): the full recomputation equals the model
  run here on each occluded image (logits and the layer's channel sums); the incremental one equals the
  full one, and is ✓ only when it really recomputed some layers incrementally;
- scan (8 images, k=4, batches of 4): each channel's top-4 values equal the per-image maxima sorted.

Results are cached per model in ``benchmarks/zoo-results.json`` (written atomically under a lock, so
pieces may run in parallel); the table is regenerated from it after each model.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import torch
import torchvision
from torch import nn

from deconvlab._io import write_bytes_atomic, write_json_atomic
from deconvlab.analyses import occlusion_map, topk_scan
from deconvlab.analyses.occlusion_incremental import why_not_incremental
from deconvlab.engine import ENGINES, RULES, project, receptive_field, strongest_units

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / "zoo-results.json"
TABLE = ROOT / "docs" / "compatibility.md"
TOLERANCE = 1e-3  # largest |result - reference| over the reference's largest |value|
REASON_LENGTH = 90  # characters of an error message kept in a cell

CAPABILITIES = (
    "strongest_units",
    "receptive_field",
    *(f"{engine} {rule}" for engine in ENGINES for rule in RULES),
    "occlusion",
    "occlusion incremental",
    "scan",
)

# timm CNNs, a small member of each family (ResNet and its variants, EfficientNet and NAS nets, ConvNeXt,
# RegNet, MobileNet, CSP/Darknet, DenseNet/DLA/DPN/HRNet/VoVNet, VGG/RepVGG, Inception/Xception,
# NFNet, and recent conv-attention hybrids)
TIMM_MODELS = (
    "resnet18", "resnet10t", "seresnext26d_32x4d", "resnest14d", "res2net50_14w_8s", "skresnet18",
    "resnetv2_50", "efficientnet_b0", "tf_efficientnet_lite0", "efficientnetv2_rw_t", "mixnet_s",
    "mnasnet_050", "fbnetc_100", "tinynet_e", "convnext_atto", "convnextv2_atto", "regnetx_002",
    "regnety_002", "regnetz_b16", "mobilenetv3_small_050", "mobilenetv4_conv_small", "lcnet_050",
    "ghostnet_100", "rexnet_100", "cspdarknet53", "cs3darknet_s", "darknet17", "cspresnet50",
    "densenet121", "dla34", "dpn68", "hrnet_w18_small", "ese_vovnet19b_dw", "selecsls42b", "vgg11",
    "repvgg_a0", "mobileone_s0", "gernet_s", "hgnetv2_b0", "inception_v3", "inception_v4", "xception41",
    "nf_resnet26", "nf_regnet_b0", "edgenext_xx_small", "fastvit_t8", "efficientvit_b0",
    "inception_next_atto", "starnet_s1", "poolformer_s12",
)  # fmt: skip

TORCHVISION_SIZES = {"inception_v3": 299}
TORCHVISION_ARGUMENTS = {"googlenet": {"init_weights": True}, "inception_v3": {"init_weights": True}}

# The fast subset (tests/test_zoo.py): one model per family, small inputs, cheap constructor arguments
QUICK = (
    ("torchvision:resnet18", 64, {}),
    ("torchvision:mobilenet_v3_small", 64, {}),
    ("torchvision:squeezenet1_0", 64, {}),
    ("torchvision:shufflenet_v2_x0_5", 64, {}),
    ("torchvision:googlenet", 64, {"aux_logits": False, "init_weights": False}),
    ("torchvision:efficientnet_b0", 64, {}),
    ("torchvision:convnext_tiny", 64, {}),
    ("torchvision:regnet_x_400mf", 64, {}),
    ("torchvision:densenet121", 64, {}),
    ("torchvision:vgg11", 64, {}),
    ("torchvision:alexnet", 64, {}),
    ("timm:cs3darknet_s", 64, {}),
    ("timm:mobilenetv3_small_050", 64, {}),
)

# Which layer: the output of the stage at 1/8 of the input side (height and width ratios in [6, 12)),
# else 1/16, 1/4, 1/32
BANDS = ((6, 12), (12, 24), (3, 6), (24, 48))


def all_specs() -> list[str]:
    """Every model of the table: torchvision's classification models, then ``TIMM_MODELS``."""
    names = torchvision.models.list_models(module=torchvision.models)
    return [f"torchvision:{name}" for name in names] + [f"timm:{name}" for name in TIMM_MODELS]


def cost(spec: str) -> float:
    """A model's GFLOPs from torchvision's weights metadata (no download), 0 for timm: runs go cheapest
    first, so a partial run covers the most models.

    >>> cost("torchvision:resnet18") < cost("torchvision:resnet50")
    True
    """
    source, _, name = spec.partition(":")
    if source != "torchvision":
        return 0.0
    return torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"]


def build_model(spec: str, size: int | None = None, **arguments) -> tuple[nn.Module, int]:
    """``spec`` ("torchvision:NAME" or "timm:NAME") with random weights in eval mode, and its input side.

    >>> model, size = build_model("torchvision:alexnet")
    >>> type(model).__name__, size, model.training
    ('AlexNet', 224, False)
    """
    source, _, name = spec.partition(":")
    if source == "torchvision":
        arguments = {**TORCHVISION_ARGUMENTS.get(name, {}), **arguments}
        model = torchvision.models.get_model(name, weights=None, **arguments)
        default = TORCHVISION_SIZES.get(name, 224)
    elif source == "timm":
        import timm

        model = timm.create_model(name, pretrained=False, **arguments)
        default = model.pretrained_cfg["input_size"][-1]
    else:
        raise ValueError(f"spec={spec!r}: expected 'torchvision:NAME' or 'timm:NAME'")
    return model.eval(), size or default


def probe_layer(model: nn.Module, image: torch.Tensor) -> tuple[str, tuple[int, ...]]:
    """The layer probed and its output shape: the stage that outputs the map at 1/8 of the input.

    Candidates: modules called once whose output is an (N, C, H, W) map no larger than their input's,
    that depends on the image (it changes with it: not a position-bias table computed from parameters),
    at about 1/8 of the input (height and width ratios in ``BANDS[0]``; else 1/16, 1/4, 1/32). Of those,
    the one with the most submodules (the stage, not a layer inside it), the last to finish on a tie.

    >>> stage = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=8, padding=1), stage, nn.Conv2d(4, 4, 1))
    >>> probe_layer(model, torch.zeros(1, 3, 64, 64))
    ('1', (1, 4, 8, 8))
    """
    maps, calls, values = [], Counter(), {}

    def recorder(name, module):
        def hook(_module, args, output):
            calls[name] += 1
            if isinstance(output, torch.Tensor) and output.dim() == 4:
                values.setdefault(name, []).append(output.detach().double().sum().item())
                before = args[0].shape[2:] if args and isinstance(args[0], torch.Tensor) else output.shape[2:]
                if output.shape[2] <= before[0] and output.shape[3] <= before[-1]:
                    maps.append((len(list(module.modules())), len(maps), name, tuple(output.shape)))

        return hook

    handles = [
        module.register_forward_hook(recorder(name, module)) for name, module in model.named_modules() if name
    ]
    try:
        with torch.no_grad():
            model(image)
            calls.clear()
            model(image.flip(-1) + 1.0)  # a second image, to see which outputs depend on it
    finally:
        for handle in handles:
            handle.remove()
    maps = [entry for entry in maps[: len(maps) // 2] if len(set(values[entry[2]])) > 1]
    height, width = image.shape[2:]
    for low, high in BANDS:
        inside = [
            (size, order, name, shape)
            for size, order, name, shape in maps
            if calls[name] == 1 and low <= height / shape[2] < high and low <= width / shape[3] < high
        ]
        if inside:
            _, _, name, shape = max(inside)
            return name, shape
    raise ValueError("no module called once outputs an (N, C, H, W) map between 1/48 and 1/3 of the input")


class _Stop(Exception):
    pass


def layer_output(model: nn.Module, images: torch.Tensor, layer: str) -> torch.Tensor:
    """The first output of module ``layer`` (the forward pass stops there); gradients as the caller set."""
    store = []

    def hook(_module, _args, output):
        store.append(output)
        raise _Stop

    handle = model.get_submodule(layer).register_forward_hook(hook)
    try:
        model(images)
    except _Stop:
        pass
    finally:
        handle.remove()
    return store[0]


def plain_gradients(model: nn.Module, image: torch.Tensor, layer: str, units: torch.Tensor) -> torch.Tensor:
    """``torch.autograd.grad`` of each unit (rows (0, c, y, x)) w.r.t. the one image: (M, C, H, W)."""
    x = image.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        output = layer_output(model, x, layer)
        grads = [
            torch.autograd.grad(output[tuple(unit)], x, retain_graph=True)[0][0] for unit in units.tolist()
        ]
    return torch.stack(grads)


def relative_error(result: torch.Tensor, reference: torch.Tensor) -> float:
    """max |result - reference| / max |reference| (absolute when the reference is all zero)."""
    result, reference = torch.as_tensor(result).double(), torch.as_tensor(reference).double()
    if result.shape != reference.shape:
        raise ValueError(f"shape {tuple(result.shape)}, expected {tuple(reference.shape)}")
    scale = reference.abs().max().item() or 1.0
    return (result - reference).abs().max().item() / scale


def verdict(result, reference) -> str:
    """``✓`` when ``result`` equals ``reference`` within ``TOLERANCE``, else ``✗ differs by X``.

    >>> verdict(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])), verdict(torch.ones(2), torch.zeros(2))
    ('✓', '✗ differs by 1.0e+00')
    """
    error = relative_error(result, reference)
    return "✓" if error <= TOLERANCE else f"✗ differs by {error:.1e}"


def reason(error: BaseException) -> str:
    """A cell for an exception: ``refused: ...`` for a ValueError raised inside deconvlab, else ``✗ ...``."""
    message = (str(error).strip().splitlines() or [""])[0].replace("|", "/")
    if len(message) > REASON_LENGTH:
        message = message[: REASON_LENGTH - 1] + "…"
    frames = traceback.extract_tb(error.__traceback__)
    ours = bool(frames) and f"{os.sep}deconvlab{os.sep}" in frames[-1].filename
    if isinstance(error, ValueError) and ours:
        return f"refused: {message}"
    return f"✗ {type(error).__name__}: {message}"


class ModelCheck:
    """Every capability on one model, image and layer; ``run()`` gives one cell per ``CAPABILITIES``."""

    def __init__(self, model: nn.Module, image: torch.Tensor, layer: str):
        self.model, self.image, self.layer = model, image, layer
        self.size = image.shape[-1]
        with torch.no_grad():
            self.output = layer_output(model, image, layer).clone()
        peaks = self.output[0].amax(dim=(1, 2))
        channels = torch.argsort(peaks, descending=True, stable=True)[:2]
        width = self.output.shape[3]
        where = self.output[0, channels].flatten(1).argmax(dim=1)
        zero = torch.zeros_like(channels)
        self.units = torch.stack([zero, channels, where // width, where % width], dim=1)
        self.gradients = plain_gradients(model, image, layer, self.units)
        self.references: dict = {}  # occluded_reference's, shared by the full and incremental checks
        self.projections: dict[tuple[str, str], torch.Tensor] = {}

    def run(self) -> dict[str, str]:
        cells = {}
        for capability in CAPABILITIES:
            try:
                cells[capability] = self.check(capability)
            except Exception as error:  # a capability's failure is its cell, never the end of the run
                cells[capability] = reason(error)
        return cells

    def check(self, capability: str) -> str:
        if capability == "strongest_units":
            return self.check_strongest_units()
        if capability == "receptive_field":
            return self.check_receptive_field()
        if capability.startswith("occlusion"):
            return self.check_occlusion(incremental=capability.endswith("incremental"))
        if capability == "scan":
            return self.check_scan()
        engine, rule = capability.split()
        return self.check_project(engine, rule)

    def check_strongest_units(self) -> str:
        units = strongest_units(self.model, self.image, self.layer)
        found = self.output[tuple(units.T)]
        return verdict(found, self.output[0].amax(dim=(1, 2)))

    def check_receptive_field(self) -> str:
        field = receptive_field(self.model, self.layer, tuple(self.image.shape[1:]))
        for unit, gradient in zip(self.units.tolist(), self.gradients, strict=True):
            y0, y1, x0, x1 = field.box(unit[2], unit[3])
            outside = gradient.abs().sum(0)
            outside[y0:y1, x0:x1] = 0
            rows, columns = torch.nonzero(outside, as_tuple=True)
            if len(rows):
                beyond = max(y0 - rows.min(), rows.max() + 1 - y1, x0 - columns.min(), columns.max() + 1 - x1)
                return f"✗ the gradient reaches {int(beyond)} px beyond the field's box"
        return "✓"

    def check_project(self, engine: str, rule: str) -> str:
        result = project(self.model, self.image, self.layer, self.units, rule=rule, engine=engine, seed="one")
        if not torch.isfinite(result).all():
            return "✗ not finite"
        self.projections[engine, rule] = result
        if rule == "gradient":
            return verdict(result, self.gradients)
        if engine != "autograd" and ("autograd", rule) in self.projections:
            return verdict(result, self.projections["autograd", rule])
        return "✓"

    def occluded_reference(self, window: int, corners: tuple[tuple[int, int], ...]):
        """Logits and the layer's channel sums, the model run here on each occluded copy of the image."""
        if (window, corners) not in self.references:
            self.references[window, corners] = self._occluded(window, corners)
        return self.references[window, corners]

    def _occluded(self, window: int, corners: tuple[tuple[int, int], ...]):
        images = self.image.repeat(len(corners), 1, 1, 1)
        for row, (y, x) in enumerate(corners):
            images[row, :, y : y + window, x : x + window] = 0.0
        store = []
        handle = self.model.get_submodule(self.layer).register_forward_hook(
            lambda _m, _a, output: store.append(output.clone())
        )
        try:
            with torch.no_grad():
                logits = self.model(images)
        finally:
            handle.remove()
        return logits, store[0].flatten(2).sum(2)

    def check_occlusion(self, incremental: bool) -> str:
        window, stride = self.size // 4, self.size // 2
        result = occlusion_map(
            self.model, self.image, window=window, stride=stride, layer=self.layer, incremental=incremental
        )
        corners = tuple((y, x) for y in result.positions_y.tolist() for x in result.positions_x.tolist())
        logits, sums = self.occluded_reference(window, corners)
        for got, want in ((result.logits, logits), (result.activations, sums)):
            cell = verdict(got.reshape(want.shape), want)
            if cell != "✓":
                return cell
        if incremental and not result.incremental_layers:
            return f"✗ recomputed in full: {self.why_not_incremental()}"
        count = len(result.incremental_layers)
        return f"✓ ({count} layer{'s' * (count != 1)})" if incremental else "✓"

    def why_not_incremental(self) -> str:
        with torch.inference_mode():
            why = why_not_incremental(self.model, self.image, self.layer)
        return why or "the plan has an incremental part, yet occlusion_map did not use it"

    def check_scan(self) -> str:
        generator = torch.Generator().manual_seed(1)
        images = torch.randn(8, *self.image.shape[1:], generator=generator)
        dataset = torch.utils.data.TensorDataset(images, torch.zeros(8))
        top = topk_scan(self.model, dataset, [self.layer], k=4, batch_size=4, progress=False, device="cpu")
        with torch.no_grad():
            maxima = layer_output(self.model, images, self.layer).amax(dim=(2, 3))  # (8, C)
        expected = maxima.T.sort(dim=1, descending=True).values[:, :4]
        return verdict(torch.as_tensor(top.layers[self.layer].values), expected)


def _shown(path: Path) -> str:
    """A path relative to the repository where it lies inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def run_model(spec: str, size: int | None = None, **arguments) -> dict:
    """One row of the table: the model, its input size, the layer probed, a cell per capability."""
    start = time.perf_counter()
    row = {"spec": spec, "size": size, "layer": None, "shape": None, "arguments": arguments}
    torch.manual_seed(0)
    try:
        model, row["size"] = build_model(spec, size, **arguments)
        image = torch.randn(1, 3, row["size"], row["size"])
        row["layer"], row["shape"] = probe_layer(model, image)
        cells = ModelCheck(model, image, row["layer"]).run()
    except Exception as error:  # the model itself: every cell says why
        cells = dict.fromkeys(CAPABILITIES, reason(error))
    row.update(cells=cells, seconds=round(time.perf_counter() - start, 1), **provenance())
    row["date"] = datetime.date.today().isoformat()
    return row


@functools.cache
def provenance() -> dict:
    """When, with what and where a row was computed; the commit is HEAD when this process first asks,
    so that of the code it imported (a long run is not fooled by later commits)."""
    try:
        import timm

        timm_version = timm.__version__
    except ImportError:
        timm_version = None
    try:
        git = ["git", "-C", str(ROOT)]
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        edits = subprocess.run(
            [*git, "status", "--porcelain", "src"], capture_output=True, text=True, check=True
        )
        commit = head.stdout.strip() + ("+edits" if edits.stdout.strip() else "")  # uncommitted src edits
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "date": datetime.date.today().isoformat(),
        "commit": commit,
        "versions": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "timm": timm_version,
        },
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s)",
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_cache(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def store_row(path: Path, row: dict) -> dict:
    """Add ``row`` to the cache at ``path`` (atomic, under a lock); return the whole cache."""
    from filelock import FileLock

    lock = Path(tempfile.gettempdir()) / f"deconvlab-zoo-{abs(hash(str(path.resolve())))}.lock"
    with FileLock(lock):
        cache = load_cache(path)
        cache[row["spec"]] = row
        write_json_atomic(path, cache)
    return cache


def summary(rows: list[dict]) -> dict[str, int]:
    """How many rows are ✓ per capability."""
    return {c: sum(row["cells"].get(c, "").startswith("✓") for row in rows) for c in CAPABILITIES}


def table(rows: list[dict], command: str, cache: Path | None) -> str:
    """The markdown page: header, a summary line per capability, one row per model."""
    versions = sorted({tuple(sorted(row["versions"].items())) for row in rows})
    machines = sorted({row["machine"] for row in rows})
    commits = sorted({str(row["commit"]) for row in rows})
    dates = sorted(row["date"] for row in rows)
    lines = [
        "# Compatibility: deconvlab on torchvision's zoo and timm CNNs",
        "",
        f"Generated by `{command}`"
        + (f" from the per-model cache `{_shown(cache)}`" if cache else "")
        + " (run in pieces: `OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/zoo.py --family NAME`; "
        "`--rerun` recomputes).",
        f"Rows computed {dates[0]} to {dates[-1]} at commit(s) {', '.join(commits)} (a row's commit: HEAD "
        "when its process started; `+edits`: src had uncommitted changes then; rows of different commits "
        "may differ as the engine changes);",
        "versions: " + "; ".join(", ".join(f"{k} {v}" for k, v in version) for version in versions) + ";",
        "machine: " + "; ".join(machines) + ".",
        "",
        "Random weights, eval mode, one image (224x224; 299 for the Inception nets; timm's own size), "
        "probed at the output of the stage at 1/8 of the input (else 1/16, 1/4). How each cell is checked: "
        "the docstring of `benchmarks/zoo.py`. A cell is ✓, `refused:` (deconvlab's own ValueError), "
        "`✗ Error:` (anything else) or `✗ differs by X` (a wrong number, relative to the reference).",
        "",
        "## Summary",
        "",
    ]
    counts = summary(rows)
    for capability in CAPABILITIES:
        tried = sum(capability in row["cells"] for row in rows)
        later = f" ({len(rows) - tried} rows predate it)" if tried < len(rows) else ""
        lines.append(f"- {capability}: {counts[capability]}/{tried}{later}")
    missing = [spec for spec in all_specs() if spec not in {row["spec"] for row in rows}]
    if missing and cache:
        lines += ["", f"Not run yet ({len(missing)}): " + ", ".join(missing) + "."]
    lines += ["", "## Models", ""]
    header = ["model", "input", "layer (output shape)", *CAPABILITIES, "s", "commit"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        shape = "x".join(str(s) for s in row["shape"][1:]) if row["shape"] else ""
        layer = f"`{row['layer']}` ({shape})" if row["layer"] else ""
        cells = [
            row["cells"].get(capability, "not run (added after this row)") for capability in CAPABILITIES
        ]
        lines.append(
            "| "
            + " | ".join(
                [row["spec"], str(row["size"]), layer, *cells, str(row["seconds"]), str(row["commit"])]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def selected(args) -> list[tuple[str, int | None, dict]]:
    if args.quick:
        runs = list(QUICK)
    elif args.models:
        runs = [(spec.strip(), args.size, {}) for spec in args.models.split(",") if spec.strip()]
    else:
        runs = [(spec, args.size, {}) for spec in sorted(all_specs(), key=cost, reverse=args.reverse)]
    if args.family:
        runs = [run for run in runs if args.family in run[0]]
    return runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated specs, e.g. torchvision:resnet18,timm:dla34")
    parser.add_argument("--family", help="only the specs containing this text (e.g. timm:, efficientnet)")
    parser.add_argument("--size", type=int, help="input side in pixels (default: each model's own)")
    parser.add_argument("--quick", action="store_true", help="the test suite's subset at its small sizes")
    parser.add_argument("--rerun", action="store_true", help="recompute models already in the cache")
    parser.add_argument("--stale", action="store_true", help="recompute rows computed at another commit")
    parser.add_argument("--reverse", action="store_true", help="costliest first (to meet a cheap-first run)")
    parser.add_argument("--table-only", action="store_true", help="only rewrite the table from the cache")
    parser.add_argument("--cache", type=Path, help=f"default {CACHE.relative_to(ROOT)} at the default sizes")
    parser.add_argument("--out", type=Path, help=f"default {TABLE.relative_to(ROOT)} at the default sizes")
    args = parser.parse_args(argv)
    default_sizes = not args.quick and args.size is None
    cache_path = args.cache or (CACHE if default_sizes else None)
    out = args.out or (TABLE if default_sizes else None)
    cache = load_cache(cache_path) if cache_path else {}
    for spec, size, arguments in [] if args.table_only else selected(args):
        stale = args.stale and cache.get(spec, {}).get("commit") != provenance()["commit"]
        if spec in cache and not args.rerun and not stale and size in (None, cache[spec]["size"]):
            continue
        row = run_model(spec, size, **arguments)
        cache = store_row(cache_path, row) if cache_path else {**cache, spec: row}
        passed = sum(cell.startswith("✓") for cell in row["cells"].values())
        print(
            f"{spec:45s} {row['size']:4d}  {passed:2d}/{len(CAPABILITIES)}  {row['seconds']:7.1f} s",
            flush=True,
        )
    order = {spec: index for index, spec in enumerate(all_specs())}
    rows = sorted(cache.values(), key=lambda row: (order.get(row["spec"], len(order)), row["spec"]))
    command = " ".join(["benchmarks/zoo.py", *(argv if argv is not None else sys.argv[1:])])
    text = table(rows, command, cache_path)
    if out is not None:
        write_bytes_atomic(out, text.encode())
        print(f"wrote {out} ({len(rows)} models)")
    else:
        print(text)


if __name__ == "__main__":
    main()
