"""The explorer's JSON API: one table of endpoints that makes the routes and the OpenAPI schema.

Every endpoint declares its query or JSON-body fields (``deconvlab.serve.params``); the route parses
them before anything runs, so a wrong type, an unknown key or malformed JSON is a 4xx with a message,
never a 500. The work itself runs in the endpoint's lane (``Explorer.lanes``): short requests in the
fast one, long ones in the slow one; a full lane is a 503 with ``Retry-After``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deconvlab.serve import arithmetic_page, views
from deconvlab.serve.explorer import Explorer
from deconvlab.serve.images import png_bytes
from deconvlab.serve.openapi import BOOLEAN, INTEGER, NUMBER, STRING, array, obj
from deconvlab.serve.params import ApiError, Bool, Choice, Field, Int, Text, UnitList, parse_fields


@dataclass(frozen=True)
class Endpoint:
    """One route: method, path, what it does, its fields, and ``run(explorer, params)``.

    ``run`` returns a JSON-able dict or a ``Response``. ``body`` lists the fields of a JSON object
    body; ``raw_body`` names the media type of a body taken as bytes (``params["data"]``).
    ``produces`` lists the media types of a success and ``returns`` the JSON schema of a JSON one;
    ``errors`` the statuses it may refuse with, besides the 400/422 of any request. ``lane``: the
    explorer's worker pool it runs in ("fast" or "slow"), or None to answer at once (cheap calls).
    """

    method: str
    path: str
    summary: str
    run: Callable[[Explorer, dict], Any]
    query: tuple[Field, ...] = ()
    body: tuple[Field, ...] | None = None
    raw_body: str | None = None
    produces: tuple[str, ...] = ("application/json",)
    returns: dict | None = None
    errors: dict[int, str] = field(default_factory=dict)
    lane: str | None = "fast"


IMAGE = Text("image", "Image reference: 'dataset:<index>', 'sample:<name>' or 'upload:<id>'.")
LAYER = Text("layer", "Layer name as in model.named_modules() (see GET /api/status).")
CHANNEL = Int("channel", "Channel of the layer.", minimum=0)
RULE = Choice("rule", "How ReLUs pass the signal down.", default="deconvnet", choices=views.RULES)
ARITHMETIC = (
    Int("input", "Input size (square).", minimum=1, maximum=12, default=5),
    Int("kernel", "Kernel size (square).", minimum=1, maximum=7, default=3),
    Int("stride", "Stride.", minimum=1, maximum=4, default=2),
    Int("padding", "Zero padding.", minimum=0, maximum=6, default=1),
    Int("dilation", "Dilation.", minimum=1, maximum=4, default=1),
    Int("output_padding", "Extra rows/columns of a transposed convolution.", minimum=0, maximum=3, default=0),
    Bool("transposed", "A transposed convolution instead of a convolution.", default=False),
)
ANIMATION = (
    Choice(
        "view",
        "Transposed only: the equivalent direct convolution, or each input stamping the kernel.",
        default="direct",
        choices=("direct", "scatter"),
    ),
    Choice("format", "Picture format (animated SVG draws faster).", default="svg", choices=("svg", "gif")),
    Int("in_channels", "Input channels, drawn as stacked blocks.", minimum=1, maximum=4, default=1),
    Int("out_channels", "Output channels.", minimum=1, maximum=4, default=1),
    Int("groups", "Channel groups (must divide both channel counts).", minimum=1, maximum=4, default=1),
)
BOX = {**array(INTEGER), "description": "Receptive field [y0, y1, x0, x1] in input pixels (may leave it)."}
PNG_URL = {"type": "string", "description": "A data:image/png;base64 URL."}
STATUS = obj(
    {
        "model": STRING,
        "input_size": INTEGER,
        "classes": array(STRING),
        "dataset_size": INTEGER,
        "layers": array(obj(name=STRING, channels=INTEGER, height=INTEGER, width=INTEGER)),
    },
    state={"type": "string", "enum": ["loading", "ready", "error"]},
    units_ready=BOOLEAN,
    progress=obj(
        stage=STRING,
        done=INTEGER,
        total={"type": ["integer", "null"]},
        message=STRING,
        seconds=NUMBER,
    ),
)
UNITS = obj(
    layer=STRING,
    k=INTEGER,
    num_images=INTEGER,
    skipped={**array(obj(path=STRING, reason=STRING)), "description": "Files the scan could not read."},
    channels=array(
        obj(
            channel=INTEGER,
            units=array(
                obj(
                    image=STRING,
                    value=NUMBER,
                    y=INTEGER,
                    x=INTEGER,
                    source={"type": ["string", "null"], "description": "The image's file (dataset.source)."},
                    **{"class": {"type": ["string", "null"], "description": "The image's class name."}},
                )
            ),
        )
    ),
)
PROJECTIONS = obj(
    layer=STRING,
    rule=STRING,
    projections=array(
        obj(
            {"patch": PNG_URL, "values": {**array(array(array(NUMBER))), "description": "C x H x W."}},
            image=STRING,
            channel=INTEGER,
            y=INTEGER,
            x=INTEGER,
            activation=NUMBER,
            box=BOX,
            projection=PNG_URL,
            blank=BOOLEAN,
        )
    ),
)
ACTIVATIONS = obj(
    image=STRING,
    layer=STRING,
    shape=array(INTEGER),
    scale=NUMBER,
    maps={"type": "string", "description": "base64 of C x H x W uint8 maps (255 = scale)."},
    channel_max=array(NUMBER),
    strongest=array(array(INTEGER)),
)
OCCLUSION = obj(
    image=STRING,
    window=INTEGER,
    stride=INTEGER,
    layer=STRING,
    channel=INTEGER,
    positions_y=array(INTEGER),
    positions_x=array(INTEGER),
    activation=array(array(NUMBER)),
    probability=array(array(NUMBER)),
    label=array(array(INTEGER)),
    classes=array(STRING),
    target=INTEGER,
    target_is_true_label=BOOLEAN,
    unoccluded=obj(activation=NUMBER, probability=NUMBER, prediction=INTEGER),
    projection=PNG_URL,
    box=BOX,
)
OPTIMIZED = obj(
    {
        "image": {**PNG_URL, "description": "Once done: the optimised image, 8-bit, at the input size."},
        "activation": {**NUMBER, "description": "Once done: the largest value of the channel's map on it."},
        "objective": {**NUMBER, "description": "Once done: the value maximised (the map's centre unit)."},
        "ratio": {"type": ["number", "null"], "description": "activation / dataset_max (null unless > 0)."},
        "steps": INTEGER,
        "seconds": NUMBER,
        "error": {**STRING, "description": "When state is 'error': why (the next request starts again)."},
    },
    layer=STRING,
    channel=INTEGER,
    state={"type": "string", "enum": ["queued", "running", "done", "error"]},
    done={**INTEGER, "description": "Steps done so far."},
    total={**INTEGER, "description": "Steps in all."},
    dataset_max={**NUMBER, "description": "The channel's largest value over the scanned dataset images."},
)
SHAPE = array(INTEGER)
ARITHMETIC_CASE = obj(
    transposed=BOOLEAN,
    input_size=INTEGER,
    output_size=INTEGER,
    input_shape=SHAPE,
    output_shape=SHAPE,
    formula=STRING,
    direct={
        "description": "Transposed only: the equal direct convolution (zeros inserted, padded, flipped).",
        "anyOf": [
            {"type": "null"},
            obj(
                zeros_between=INTEGER,
                stretched_size=INTEGER,
                pad_before=INTEGER,
                pad_after=INTEGER,
                kernel_size=INTEGER,
                dilation=INTEGER,
                stride=INTEGER,
                flipped=BOOLEAN,
                output_size=INTEGER,
                text=STRING,
            ),
        ],
    },
    pytorch=STRING,
    pytorch_functional=STRING,
    matrix=obj(
        rows=INTEGER,
        cols=INTEGER,
        name=STRING,
        taps={
            "description": "Entry t+1 where the matrix holds kernel tap t; null when too large to draw.",
            "anyOf": [{"type": "null"}, array(array(INTEGER))],
        },
    ),
)
NOT_READY = {503: "The model is still loading (or failed to); the message says which."}


def _png(image) -> Response:
    return Response(png_bytes(image), media_type="image/png", headers={"Cache-Control": "no-store"})


def _unit_grid(explorer: Explorer, p: dict) -> Response:
    return _png(views.unit_grid(explorer, layer=p["layer"], channel=p["channel"]))


def _upload(explorer: Explorer, p: dict) -> dict:
    return {"image": explorer.add_upload(p["data"])}


def _arithmetic(explorer: Explorer, p: dict) -> dict:
    try:
        return arithmetic_page.describe(**p)
    except ValueError as error:
        raise ApiError(str(error)) from None


def _animation(explorer: Explorer, p: dict) -> Response:
    key = tuple(sorted(p.items()))
    drawn = explorer.animations.get(key)
    if drawn is None:
        try:
            drawn = arithmetic_page.animation(**p)
        except ValueError as error:
            raise ApiError(str(error)) from None
        explorer.animations.put(key, drawn)
    data, media_type = drawn
    return Response(data, media_type=media_type, headers={"Cache-Control": "max-age=3600"})


ENDPOINTS = (
    Endpoint(
        "GET",
        "/api/status",
        "Loading progress; once ready: the model, its layers and classes.",
        lambda explorer, p: explorer.status(),
        returns=STATUS,
        lane=None,
    ),
    Endpoint(
        "GET",
        "/api/images",
        "The images one can pick: samples, dataset examples, uploads.",
        lambda explorer, p: explorer.image_refs(),
        returns=obj(samples=array(STRING), dataset=array(STRING), uploads=array(STRING)),
        errors=NOT_READY,
    ),
    Endpoint(
        "GET",
        "/api/image.png",
        "An image at the model's input size, as the model sees it.",
        lambda explorer, p: _png(explorer.image(p["ref"])),
        query=(Text("ref", IMAGE.doc),),
        produces=("image/png",),
        errors={404: "No such image.", 422: "Not an image reference.", **NOT_READY},
    ),
    Endpoint(
        "POST",
        "/api/upload",
        "Upload an image (the file's bytes as the body, PNG/JPEG/GIF/BMP/WEBP/TIFF); returns its reference.",
        _upload,
        raw_body="application/octet-stream",
        returns=obj(image=STRING),
        errors={
            400: "Empty body.",
            413: "Too many bytes or pixels (decompression-bomb guard).",
            415: "Not an image Pillow can read.",
            **NOT_READY,
        },
    ),
    Endpoint(
        "GET",
        "/api/units",
        "The top-k dataset units of every channel of a layer, from the scan.",
        lambda explorer, p: views.units(explorer, layer=p["layer"]),
        query=(LAYER,),
        returns=UNITS,
        errors={404: "Unknown layer.", **NOT_READY},
    ),
    Endpoint(
        "GET",
        "/api/units/grid.png",
        "A channel's top-k image patches (receptive fields) as a grid.",
        _unit_grid,
        query=(LAYER, CHANNEL),
        produces=("image/png",),
        errors={404: "Unknown layer.", 422: "Channel out of range.", **NOT_READY},
    ),
    Endpoint(
        "POST",
        "/api/project",
        "Project units to pixel space (deconvnet, guided or gradient).",
        lambda explorer, p: views.project_units(explorer, **p),
        returns=PROJECTIONS,
        body=(
            LAYER,
            UnitList("units", "The units to project."),
            RULE,
            Bool("crop", "Crop projections to the receptive field and add the image patch.", default=False),
            Bool("values", "Add the raw projection values (C x H x W floats).", default=False),
            Bool(
                "randomized",
                "Project through a copy of the model whose layers are all re-drawn (normal, each tensor's "
                "own mean and spread; the sanity check of Adebayo et al. 2018).",
                default=False,
            ),
        ),
        errors={404: "Unknown layer or image.", 422: "Unit out of range or bad field.", **NOT_READY},
    ),
    Endpoint(
        "POST",
        "/api/optimize",
        "A channel's optimised image (feature visualisation): the first call starts it in the slow lane; "
        "call again for its progress, then the image.",
        lambda explorer, p: views.optimized_image(explorer, **p),
        returns=OPTIMIZED,
        body=(LAYER, CHANNEL),
        errors={
            404: "Unknown layer.",
            422: "Channel out of range.",
            503: f"{NOT_READY[503]} Or: the slow lane is full (retry after Retry-After seconds).",
        },
        lane=None,
    ),
    Endpoint(
        "POST",
        "/api/activations",
        "A layer's rectified activation maps for one image.",
        lambda explorer, p: views.activation_maps(explorer, **p),
        returns=ACTIVATIONS,
        body=(IMAGE, LAYER),
        errors={404: "Unknown layer or image.", **NOT_READY},
    ),
    Endpoint(
        "POST",
        "/api/occlusion",
        "Occlusion sensitivity maps (the paper's Fig. 7) for one image.",
        lambda explorer, p: views.occlusion(explorer, **p),
        returns=OCCLUSION,
        lane="slow",
        body=(
            IMAGE,
            Int("window", "Occluder size in pixels.", minimum=1, maximum=512),
            Int("stride", "Occluder step in pixels.", minimum=1, maximum=512),
        ),
        errors={
            404: "Unknown image.",
            422: "Window larger than the image, or too many positions.",
            **NOT_READY,
        },
    ),
    Endpoint(
        "GET",
        "/api/arithmetic",
        "Output size, formula, equivalent direct convolution, matrix C and PyTorch call of one convolution.",
        _arithmetic,
        query=ARITHMETIC,
        returns=ARITHMETIC_CASE,
        errors={422: "Invalid combination (the arithmetic core says why)."},
    ),
    Endpoint(
        "GET",
        "/api/arithmetic/animation",
        "The animation of the same case.",
        _animation,
        query=ARITHMETIC + ANIMATION,
        produces=("image/svg+xml", "image/gif"),
        errors={422: "Invalid combination (the arithmetic core says why)."},
    ),
)


async def read_json_object(request: Request) -> dict:
    """The body as a JSON object, or a 400 (malformed) / 422 (not an object)."""
    body = await request.body()
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(f"the body is not valid JSON ({error})", status=400) from None
    except RecursionError:
        raise ApiError("the body is not valid JSON for this API (nested too deeply)", status=400) from None
    if not isinstance(value, dict):
        raise ApiError(f"the body must be a JSON object, not {type(value).__name__}")
    return value


def make_route(endpoint: Endpoint, explorer: Explorer) -> Route:
    """A Starlette route that parses the endpoint's fields, then runs it in a worker thread."""

    async def handle(request: Request) -> Response:
        params = parse_fields(endpoint.query, dict(request.query_params), from_query=True)
        if endpoint.body is not None:
            params.update(parse_fields(endpoint.body, await read_json_object(request), from_query=False))
        if endpoint.raw_body is not None:
            params["data"] = await request.body()
        if endpoint.lane is None:
            result = endpoint.run(explorer, params)
        else:
            result = await explorer.lanes[endpoint.lane].run(endpoint.run, explorer, params)
        return result if isinstance(result, Response) else JSONResponse(result)

    return Route(endpoint.path, handle, methods=[endpoint.method], name=endpoint.path)
