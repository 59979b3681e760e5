"""The explorer's JSON API (``deconvlab serve``), checked against direct library calls.

The app is built on a small untrained zfnet-mini and 24 built-in images, so every number the API
returns can be recomputed here by calling the library (or PyTorch) directly.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import pickle
import socket
import struct
import threading
import zlib
from xml.etree import ElementTree

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

from deconvlab.analyses.features import conv_layers  # noqa: E402
from deconvlab.analyses.occlusion import occlusion_map  # noqa: E402
from deconvlab.analyses.scan import topk_scan  # noqa: E402
from deconvlab.data import BuiltinDataset, normalize  # noqa: E402
from deconvlab.engine import project, receptive_field  # noqa: E402
from deconvlab.models import create  # noqa: E402
from deconvlab.serve import Loaded, ServeConfig, background_server, create_app  # noqa: E402
from deconvlab.serve.images import model_view, sample_image  # noqa: E402
from deconvlab.serve.loading import Progress  # noqa: E402

LAYER = "features.8"  # conv3 of zfnet-mini: 96 channels, 8x8 at 64x64
OPTIMIZE_STEPS = 12  # a few steps of a card's optimised image: its numbers are checked, not its reach


def tiny_loader(progress: Progress) -> Loaded:
    torch.manual_seed(0)
    model = create("zfnet-mini", num_classes=12)
    return Loaded(model=model, dataset=BuiltinDataset("val", 64, size=24, cache=False), name="tiny")


@pytest.fixture(scope="module")
def app():
    config = ServeConfig(
        loader=tiny_loader,
        max_upload_bytes=200_000,
        max_image_pixels=1_000_000,
        optimize_steps=OPTIMIZE_STEPS,
    )
    app = create_app(config)
    with TestClient(app) as client:
        assert app.state.explorer.wait(120), client.get("/api/status").json()
        app.state.client = client
        yield app


@pytest.fixture(scope="module")
def client(app):
    return app.state.client


@pytest.fixture(scope="module")
def model(app):
    return app.state.explorer.session().model


@pytest.fixture(scope="module")
def dataset(app):
    return app.state.explorer.session().dataset


def conv_prefix(model, layer: str):
    """The model's own modules up to ``layer`` (features.N), as an independent forward pass."""
    return model.features[: int(layer.split(".")[1]) + 1]


def pixels_of(client, ref: str) -> np.ndarray:
    response = client.get("/api/image.png", params={"ref": ref})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


def png_file(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


# ---- the model's layers, units and projections ----


def test_status_lists_every_conv_layer_with_its_output_shape(client, model):
    status = client.get("/api/status").json()
    assert status["state"] == "ready" and status["units_ready"] and status["input_size"] == 64
    x = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        expected = [[name, *conv_prefix(model, name)(x).shape[1:]] for name in conv_layers(model)]
    got = [[layer["name"], layer["channels"], layer["height"], layer["width"]] for layer in status["layers"]]
    assert got == expected


@pytest.mark.parametrize("rule", ["deconvnet", "guided", "gradient"])
def test_projection_request_equals_a_direct_project_call(client, model, dataset, rule):
    units = [
        {"image": "dataset:3", "channel": 5, "y": 2, "x": 3},
        {"image": "sample:coffee", "channel": 40, "y": 7, "x": 0},
        {"image": "dataset:3", "channel": 90, "y": 4, "x": 4},
    ]
    response = client.post(
        "/api/project", json={"layer": LAYER, "units": units, "rule": rule, "values": True}
    )
    assert response.status_code == 200, response.text
    got = response.json()["projections"]

    images = np.stack([dataset.image(3), model_view(sample_image("coffee"), 64)])
    inputs = normalize(images)
    rows = torch.tensor([[0, 5, 2, 3], [1, 40, 7, 0], [0, 90, 4, 4]])
    expected = project(model, inputs, LAYER, rows, rule=rule)
    torch.testing.assert_close(torch.tensor([p["values"] for p in got]), expected, rtol=0, atol=0)
    with torch.no_grad():
        maps = conv_prefix(model, LAYER)(inputs)
    np.testing.assert_allclose(
        [p["activation"] for p in got], [float(maps[tuple(r)]) for r in rows.tolist()], rtol=1e-5
    )
    field = receptive_field(model, LAYER, (3, 64, 64))
    assert [p["box"] for p in got] == [list(field.box(y, x)) for _, _, y, x in rows.tolist()]
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(got[0]["projection"].split(",")[1]))))
    assert shown.shape == (64, 64, 3) and shown.std() > 0


def test_cropped_projection_and_patch_cover_the_receptive_field(client, dataset):
    unit = {"image": "dataset:5", "channel": 7, "y": 1, "x": 6}
    got = client.post("/api/project", json={"layer": LAYER, "units": [unit], "crop": True}).json()[
        "projections"
    ][0]
    y0, y1, x0, x1 = got["box"]
    patch = np.asarray(Image.open(io.BytesIO(base64.b64decode(got["patch"].split(",")[1]))).convert("RGB"))
    np.testing.assert_array_equal(patch, dataset.image(5)[y0:y1, x0:x1])
    projection = Image.open(io.BytesIO(base64.b64decode(got["projection"].split(",")[1])))
    assert projection.size == (x1 - x0, y1 - y0)


def test_twenty_concurrent_projection_requests_are_all_correct(app, model, dataset):
    generator = np.random.default_rng(0)
    rows = [
        [int(i), int(c), int(y), int(x)]
        for i, c, y, x in zip(
            generator.integers(0, 24, 20),
            generator.integers(0, 96, 20),
            generator.integers(0, 8, 20),
            generator.integers(0, 8, 20),
            strict=True,
        )
    ]
    inputs = normalize(np.stack([dataset.image(i) for i in range(24)]))
    expected = torch.cat(
        [
            project(model, inputs[i : i + 1], LAYER, torch.tensor([[0, c, y, x]]), rule="guided")
            for i, c, y, x in rows
        ]
    )
    bodies = [
        {
            "layer": LAYER,
            "rule": "guided",
            "values": True,
            "units": [{"image": f"dataset:{i}", "channel": c, "y": y, "x": x}],
        }
        for i, c, y, x in rows
    ]

    async def fire(url):
        import httpx

        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            return await asyncio.gather(*(http.post("/api/project", json=body) for body in bodies))

    with background_server(app) as url:
        responses = asyncio.run(fire(url))
    assert [r.status_code for r in responses] == [200] * 20
    got = torch.tensor([r.json()["projections"][0]["values"] for r in responses])
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_projections_and_activations_running_beside_occlusions_are_all_correct(app, model, dataset):
    """Mixed requests at once (no lock between them): each answer equals the direct library call."""
    units = [{"image": f"dataset:{i}", "channel": 7 * i, "y": i % 8, "x": (3 * i) % 8} for i in range(8)]
    inputs = normalize(np.stack([dataset.image(i) for i in range(8)]))
    expected = [
        project(model, inputs[i : i + 1], LAYER, torch.tensor([[0, 7 * i, i % 8, (3 * i) % 8]]))[0]
        for i in range(8)
    ]
    with torch.no_grad():
        maps = [conv_prefix(model, "features.4")(inputs[i : i + 1])[0].clamp(min=0) for i in range(8)]
    last = conv_layers(model)[-1]
    occluded = [
        occlusion_map(model, inputs[i : i + 1], window=16, stride=8, layer=last, incremental=False)
        for i in (0, 1)
    ]

    async def fire(url):
        import httpx

        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            occlusions = [{"image": f"dataset:{i}", "window": 16, "stride": 8} for i in (0, 1)]
            projections = [{"layer": LAYER, "units": [unit], "values": True} for unit in units]
            activations = [{"image": f"dataset:{i}", "layer": "features.4"} for i in range(8)]
            requests = [
                *(http.post("/api/occlusion", json=body) for body in occlusions),
                *(http.post("/api/project", json=body) for body in projections),
                *(http.post("/api/activations", json=body) for body in activations),
            ]
            return await asyncio.gather(*requests)

    with background_server(app) as url:
        responses = asyncio.run(fire(url))
    assert [r.status_code for r in responses] == [200] * 18, [
        r.text for r in responses if r.status_code != 200
    ]
    answers = [r.json() for r in responses]
    for i, data in enumerate(answers[:2]):
        channel = data["channel"]
        reference = occluded[i].activations[0, :, :, channel]
        np.testing.assert_allclose(data["activation"], reference, rtol=1e-4, atol=1e-4)
    for data, reference in zip(answers[2:10], expected, strict=True):
        torch.testing.assert_close(torch.tensor(data["projections"][0]["values"]), reference, rtol=0, atol=0)
    for data, reference in zip(answers[10:], maps, strict=True):
        np.testing.assert_allclose(data["channel_max"], reference.flatten(1).amax(1), rtol=1e-5)


def test_a_long_request_running_does_not_hold_up_a_short_one(app, client):
    """While the slow lane is busy with a call that holds the model, a projection still gets its answer."""
    explorer, started, release = app.state.explorer, threading.Event(), threading.Event()

    def long_call():
        with explorer.model():
            started.set()
            release.wait(60)
        return "done"

    async def slow_then_short():
        slow = asyncio.ensure_future(explorer.lanes["slow"].run(long_call))
        await asyncio.to_thread(started.wait, 60)
        unit = {"image": "dataset:0", "channel": 1, "y": 1, "x": 1}
        short = await asyncio.to_thread(client.post, "/api/project", json={"layer": LAYER, "units": [unit]})
        still_running = not slow.done()
        release.set()
        return short, still_running, await slow

    short, still_running, slow = asyncio.run(slow_then_short())
    assert short.status_code == 200 and still_running and slow == "done"


def test_a_client_that_leaves_mid_body_is_not_a_server_error(app, caplog):
    sent = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/activations",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
        "query_string": b"",
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
    }
    with caplog.at_level(logging.ERROR):
        asyncio.run(app(scope, receive, send))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 400
    assert "unexpected error" not in caplog.text


def test_a_full_lane_answers_503_with_retry_after_at_once():
    app = create_app(ServeConfig(loader=tiny_loader, fast_lane=(1, 1), slow_queue=0))
    with TestClient(app) as client:
        assert app.state.explorer.wait(120)
        fast, release = app.state.explorer.lanes["fast"], threading.Event()

        async def fill_then_ask():
            held = [
                asyncio.ensure_future(fast.run(release.wait, 60)) for _ in range(2)
            ]  # 1 running, 1 waiting
            await asyncio.sleep(0)
            refused = await asyncio.to_thread(client.get, "/api/images")
            release.set()
            return refused, await asyncio.gather(*held)

        refused, held = asyncio.run(fill_then_ask())
        assert held == [True, True]
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        assert "busy" in refused.json()["error"] and refused.json()["status"] == 503
        assert client.get("/api/images").status_code == 200  # room again
        declared = client.get("/openapi.json").json()["paths"]["/api/images"]["get"]["responses"]["503"]
        assert "Retry-After" in declared["headers"]


def test_units_are_the_top_k_scan_and_their_grid_is_a_picture(client, model, dataset):
    data = client.get("/api/units", params={"layer": LAYER}).json()
    scan = topk_scan(model, dataset, [LAYER], k=9, progress=False).layers[LAYER]
    assert data["num_images"] == 24 and len(data["channels"]) == 96
    for channel in data["channels"]:
        assert [(int(u["image"].split(":")[1]), u["value"], (u["y"], u["x"])) for u in channel["units"]] == [
            (i, pytest.approx(v, rel=1e-6), p) for i, v, p in scan.entries(channel["channel"])
        ]
    tops = [channel["units"][0]["value"] for channel in data["channels"]]
    assert tops == sorted(tops, reverse=True)
    response = client.get(
        "/api/units/grid.png", params={"layer": LAYER, "channel": data["channels"][0]["channel"]}
    )
    grid = Image.open(io.BytesIO(response.content))
    assert response.headers["content-type"] == "image/png" and grid.size == (3 * 48 + 4, 3 * 48 + 4)


def test_randomised_weights_project_through_a_re_drawn_copy_and_leave_the_model(client, model, dataset):
    import copy

    from deconvlab.analyses.sanity import parametrised_layers, randomise_layers

    trained = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    units = [{"image": "dataset:3", "channel": 5, "y": 2, "x": 3}]
    body = {"layer": LAYER, "units": units, "values": True}
    got = client.post("/api/project", json={**body, "randomized": True}).json()["projections"][0]
    inputs = normalize(dataset.image(3))[None]
    names = parametrised_layers(model, inputs, "")
    assert names[0] == "features.0" and names[-1] == "classifier.6"  # every layer: conv and linear
    redrawn = randomise_layers(copy.deepcopy(model), names, seed=0)
    row = torch.tensor([[0, 5, 2, 3]])
    np.testing.assert_allclose(got["values"], project(redrawn, inputs, LAYER, row)[0], rtol=1e-5, atol=1e-7)
    plain = client.post("/api/project", json=body).json()["projections"][0]
    np.testing.assert_allclose(plain["values"], project(model, inputs, LAYER, row)[0], rtol=1e-5, atol=1e-7)
    assert not np.allclose(got["values"], plain["values"])
    for name, tensor in model.state_dict().items():  # the served model itself is untouched
        assert torch.equal(tensor, trained[name]), name


def test_units_name_their_files_as_the_dataset_does(client, dataset):
    data = client.get("/api/units", params={"layer": "features.4"}).json()
    for channel in data["channels"][:8]:
        for unit in channel["units"]:
            index = int(unit["image"].split(":")[1])
            assert unit["source"] == dataset.source(index) == f"builtin:val/{index}"
            assert unit["class"] == dataset.classes[dataset.labels[index]]


def decode_data_url(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.array(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def test_a_cards_optimised_image_shows_progress_then_reaches_what_it_says(app, client, model, dataset):
    from deconvlab.analyses.optimize import measure
    from deconvlab.report.optimized import optimized_images

    channel = 7
    body = {"layer": LAYER, "channel": channel}
    seen = []
    for _ in range(2000):  # polled as the page polls it, until it is done
        answer = client.post("/api/optimize", json=body)
        assert answer.status_code == 200, answer.text
        data = answer.json()
        seen.append(data["state"])
        assert data["total"] == OPTIMIZE_STEPS and 0 <= data["done"] <= data["total"]
        if data["state"] == "done":
            break
        threading.Event().wait(0.05)
    assert seen[-1] == "done" and set(seen) <= {"queued", "running", "done"}, seen
    assert data["done"] == data["steps"] == OPTIMIZE_STEPS
    pixels = decode_data_url(data["image"])
    assert pixels.shape == (64, 64, 3)
    objective, largest = measure(model, LAYER, normalize(pixels)[None], [channel], "centre")
    np.testing.assert_allclose([data["activation"], data["objective"]], [largest[0], objective[0]], rtol=1e-5)
    best = topk_scan(model, dataset, [LAYER], k=1, progress=False).layers[LAYER].values[channel, 0]
    assert data["dataset_max"] == pytest.approx(float(best), rel=1e-6)
    assert data["ratio"] == pytest.approx(data["activation"] / data["dataset_max"])
    # the library called directly, with the same seed, draws the same picture
    (direct,) = optimized_images(model, LAYER, [channel], steps=OPTIMIZE_STEPS)
    assert np.abs(direct.pixels.astype(int) - pixels).max() <= 1
    # kept: a second request answers the same at once, and nothing is computed again
    assert client.post("/api/optimize", json=body).json() == data
    jobs = [key for key in app.state.explorer.optimizations.keys() if key[1:] == (LAYER, channel)]
    assert jobs == [("tiny", LAYER, channel)]


@pytest.mark.parametrize(
    "body, status, says",
    [
        (
            {"layer": LAYER, "channel": 96},
            422,
            "channel=96: out of range; layer 'features.8' has 96 channels",
        ),
        ({"layer": "features.99", "channel": 0}, 404, "layer='features.99': unknown"),
        ({"layer": LAYER}, 422, "channel"),
    ],
)
def test_bad_optimisation_requests_say_why(client, body, status, says):
    answer = client.post("/api/optimize", json=body)
    assert answer.status_code == status and says in answer.json()["error"], answer.text


def test_activation_maps_are_the_rectified_layer_output(client, model):
    data = client.post("/api/activations", json={"image": "sample:chelsea", "layer": "features.4"}).json()
    x = normalize(model_view(sample_image("chelsea"), 64))[None]
    with torch.no_grad():
        maps = conv_prefix(model, "features.4")(x)[0].clamp(min=0).numpy()
    assert data["shape"] == list(maps.shape)
    got = np.frombuffer(base64.b64decode(data["maps"]), np.uint8).reshape(maps.shape)
    np.testing.assert_array_equal(got, np.rint(255 * maps / maps.max()).astype(np.uint8))
    np.testing.assert_allclose(data["channel_max"], maps.reshape(len(maps), -1).max(1), rtol=1e-6)


def test_occlusion_maps_equal_full_recomputation(client, model, dataset):
    data = client.post("/api/occlusion", json={"image": "dataset:2", "window": 16, "stride": 8}).json()
    x = normalize(dataset.image(2))[None]
    last = conv_layers(model)[-1]
    reference = occlusion_map(model, x, window=16, stride=8, layer=last, incremental=False)
    probabilities = torch.softmax(reference.logits[0].double(), dim=-1)
    with torch.no_grad():
        channel = int(conv_prefix(model, last)(x)[0].sum(dim=(1, 2)).argmax())
    assert (data["layer"], data["channel"], data["target"]) == (last, channel, dataset.labels[2])
    assert data["positions_y"] == [0, 8, 16, 24, 32, 40, 48] == data["positions_x"]
    np.testing.assert_allclose(data["probability"], probabilities[..., dataset.labels[2]], rtol=1e-4)
    np.testing.assert_allclose(
        data["activation"], reference.activations[0, :, :, channel], rtol=1e-4, atol=1e-4
    )
    assert data["label"] == probabilities.argmax(dim=-1).tolist()


# ---- the arithmetic page ----

CASES = [
    dict(input=5, kernel=3, stride=2, padding=1, dilation=1, output_padding=0, transposed=False),
    dict(input=7, kernel=3, stride=1, padding=0, dilation=2, output_padding=0, transposed=False),
    dict(input=5, kernel=3, stride=2, padding=1, dilation=1, output_padding=1, transposed=True),
    dict(input=4, kernel=2, stride=2, padding=0, dilation=1, output_padding=0, transposed=True),
    dict(input=3, kernel=3, stride=1, padding=0, dilation=3, output_padding=2, transposed=True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_arithmetic_matches_pytorch(client, case):
    data = client.get("/api/arithmetic", params=case).json()
    module = eval(data["pytorch"], {"torch": torch})  # the page's PyTorch call, run as written
    k = case["kernel"]
    with torch.no_grad():
        module.weight.copy_(torch.arange(1.0, k * k + 1).reshape(1, 1, k, k))
    x = torch.randn(1, 1, case["input"], case["input"], dtype=torch.float64)
    y = module.double()(x)
    assert data["output_shape"] == list(y.shape)
    taps = torch.tensor(data["matrix"]["taps"], dtype=torch.float64)  # entries: tap index + 1
    torch.testing.assert_close(taps @ x.flatten(), y.flatten())
    if case["transposed"]:
        direct = data["direct"]
        assert direct["output_size"] == y.shape[-1] and direct["zeros_between"] == case["stride"] - 1


def test_animation_is_an_svg_with_one_frame_per_output_cell(client):
    params = dict(input=4, kernel=3, stride=1, padding=0, dilation=1, output_padding=0, transposed=False)
    response = client.get("/api/arithmetic/animation", params=params)
    assert response.headers["content-type"].startswith("image/svg+xml")
    root = ElementTree.fromstring(response.content)
    frames = {
        g.get("data-frame") for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "cells"
    }
    assert len(frames) == 4  # one per output cell: (4 - 3 + 1)^2
    big = {**params, "input": 12, "stride": 2, "transposed": True}  # output (12-1)*2 + 3 = 25: 625 frames
    refused = client.get("/api/arithmetic/animation", params=big)
    assert refused.status_code == 422 and "625 frames" in refused.json()["error"]


# ---- bad input: always a 4xx JSON answer that says why ----

BAD_REQUESTS = [
    ("post", "/api/project", b"{not json", 400, "not valid JSON"),
    ("post", "/api/project", b"[1, 2]", 422, "JSON object"),
    ("post", "/api/project", b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
    ("post", "/api/project", b"\xff\xfe{}", 400, "not valid JSON"),
    ("post", "/api/project", {"units": []}, 422, "layer"),
    ("post", "/api/project", {"layer": LAYER, "units": []}, 422, "units"),
    (
        "post",
        "/api/project",
        {"layer": "features.99", "units": [{"image": "dataset:0", "channel": 0, "y": 0, "x": 0}]},
        404,
        "features.99",
    ),
    (
        "post",
        "/api/project",
        {"layer": 8, "units": [{"image": "dataset:0", "channel": 0, "y": 0, "x": 0}]},
        422,
        "layer=8",
    ),
    (
        "post",
        "/api/project",
        {"layer": LAYER, "units": [{"image": "dataset:0", "channel": 96, "y": 0, "x": 0}]},
        422,
        "channel=96",
    ),
    (
        "post",
        "/api/project",
        {"layer": LAYER, "units": [{"image": "dataset:0", "channel": 0, "y": 8, "x": 0}]},
        422,
        "y=8",
    ),
    (
        "post",
        "/api/project",
        {"layer": LAYER, "units": [{"image": "dataset:0", "channel": -1, "y": 0, "x": 0}]},
        422,
        "channel=-1",
    ),
    (
        "post",
        "/api/project",
        {"layer": LAYER, "units": [{"image": "dataset:0", "channel": 1.5, "y": 0, "x": 0}]},
        422,
        "channel=1.5",
    ),
    (
        "post",
        "/api/project",
        {"layer": LAYER, "units": [{"image": "dataset:0", "channel": True, "y": 0, "x": 0}]},
        422,
        "channel=True",
    ),
    (
        "post",
        "/api/project",
        {"layer": LAYER, "units": [{"image": "dataset:0", "channel": 0, "y": 0}]},
        422,
        "keys",
    ),
    (
        "post",
        "/api/project",
        {"layer": LAYER, "units": [{"image": "dataset:24", "channel": 0, "y": 0, "x": 0}]},
        404,
        "dataset:24",
    ),
    (
        "post",
        "/api/project",
        {"layer": LAYER, "units": [{"image": "sample:lena", "channel": 0, "y": 0, "x": 0}]},
        404,
        "lena",
    ),
    (
        "post",
        "/api/project",
        {"layer": LAYER, "units": [{"image": "upload:abc", "channel": 0, "y": 0, "x": 0}]},
        404,
        "upload",
    ),
    (
        "post",
        "/api/project",
        {"layer": LAYER, "units": [{"image": "../etc/passwd", "channel": 0, "y": 0, "x": 0}]},
        422,
        "passwd",
    ),
    (
        "post",
        "/api/project",
        {"layer": LAYER, "rule": "lrp", "units": [{"image": "dataset:0", "channel": 0, "y": 0, "x": 0}]},
        422,
        "rule='lrp'",
    ),
    (
        "post",
        "/api/project",
        {"layer": LAYER, "extra": 1, "units": [{"image": "dataset:0", "channel": 0, "y": 0, "x": 0}]},
        422,
        "extra",
    ),
    ("post", "/api/occlusion", {"image": "dataset:0", "window": 65, "stride": 4}, 422, "window=65"),
    ("post", "/api/occlusion", {"image": "dataset:0", "window": 2, "stride": 1}, 422, "positions"),
    ("post", "/api/occlusion", {"image": "dataset:0", "window": "8", "stride": 4}, 422, "window='8'"),
    ("post", "/api/activations", {"image": "dataset:0", "layer": "classifier.1"}, 404, "classifier.1"),
    ("get", "/api/units?layer=nope", None, 404, "nope"),
    ("get", "/api/units/grid.png?layer=features.8&channel=96", None, 422, "channel=96"),
    ("get", "/api/units/grid.png?layer=features.8&channel=x", None, 422, "channel='x'"),
    ("get", "/api/image.png?ref=dataset:-1", None, 404, "dataset:-1"),
    ("get", "/api/arithmetic?stride=0", None, 422, "stride='0'"),
    ("get", "/api/arithmetic?stride=two", None, 422, "stride='two'"),
    ("get", "/api/arithmetic?transposed=maybe", None, 422, "transposed"),
    ("get", "/api/arithmetic?input=2&kernel=5", None, 422, "empty"),
    ("get", "/api/arithmetic?transposed=true&output_padding=2&stride=2", None, 422, "output_padding=2"),
    ("get", "/api/arithmetic?output_padding=1", None, 422, "only a transposed"),
    ("get", "/api/arithmetic?input=99999999999999999999999", None, 422, "input="),
    ("get", "/api/nothing-here", None, 404, "Not Found"),
    ("put", "/api/project", {}, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize(
    "method, path, body, status, says",
    BAD_REQUESTS,
    ids=[f"{m}-{p}-{s}-{w}" for m, p, _, s, w in BAD_REQUESTS],
)
def test_bad_requests_get_a_4xx_json_answer_saying_why(client, method, path, body, status, says):
    kwargs = {"content": body} if isinstance(body, bytes) else {} if body is None else {"json": body}
    response = client.request(method.upper(), path, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["status"] == status and says in response.json()["error"]
    assert "Traceback" not in response.text


# ---- uploads ----


def test_an_uploaded_image_is_used_as_the_model_sees_it(client):
    photo = sample_image("rocket")[:200:2, :300:2]  # 100 x 150
    reference = client.post("/api/upload", content=png_file(photo)).json()["image"]
    assert reference.startswith("upload:") and reference in client.get("/api/images").json()["uploads"]
    np.testing.assert_array_equal(pixels_of(client, reference), model_view(photo, 64))
    assert (
        client.post("/api/activations", json={"image": reference, "layer": "features.0"}).status_code == 200
    )


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height (1-bit) and holds a tiny compressed stream: a bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "body, status, says",
    [
        (b"", 400, "empty"),
        (b"this is a text file, not a picture", 415, "not an image"),
        (b"%PDF-1.4\n" + b"0" * 100, 415, "not an image"),
        (png_file(np.zeros((8, 8, 3), np.uint8))[:40], 415, "not an image"),  # truncated
        (png_file(np.zeros((8, 8, 3), np.uint8))[:-20] + b"garbage" * 3, 415, "not an image"),  # corrupt end
        (png_header_only(1200, 1000), 413, "1200x1000"),  # over this app's 1,000,000-pixel limit
        (png_header_only(30000, 30000), 413, "decompression"),  # over Pillow's own bomb limit too
        (b"\x89PNG" + b"0" * 300_000, 413, "limit is 200000 bytes"),
    ],
    ids=["empty", "text", "pdf", "truncated", "corrupt", "pixels", "bomb", "too-large"],
)
def test_bad_uploads_are_refused_with_the_reason(client, body, status, says):
    response = client.post("/api/upload", content=body)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]


def test_an_upload_without_content_length_is_cut_off_at_the_limit(client):
    def chunks():
        for _ in range(30):
            yield b"0" * 10_000

    response = client.post("/api/upload", content=chunks())  # chunked: no Content-Length
    assert response.status_code == 413 and "limit is 200000 bytes" in response.json()["error"]


# ---- static files, instances, schema, loading ----


@pytest.mark.parametrize(
    "path",
    [
        "/static/../pyproject.toml",
        "/static/..%2f..%2f..%2fpyproject.toml",
        "/static/%2e%2e/%2e%2e/app.py",
        "/static/..%5c..%5capp.py",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
    ],
)
def test_static_paths_cannot_leave_their_folder(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "root:" not in response.text and "create_app" not in response.text


def test_raw_traversal_against_the_running_server_is_refused(app):
    with background_server(app) as url:
        host, port = url.split("//")[1].rstrip("/").split(":")
        replies = []
        for target in ("/static/../../../../../../etc/passwd", "/static/../app.py", "/static/app.js"):
            with socket.create_connection((host, int(port)), timeout=10) as raw:
                raw.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                replies.append(b"".join(iter(lambda: raw.recv(65536), b"")).decode("latin-1"))
    assert replies[0].startswith("HTTP/1.1 404") and "root:" not in replies[0]
    assert replies[1].startswith("HTTP/1.1 404") and "create_app" not in replies[1]
    assert replies[2].startswith("HTTP/1.1 200") and "showPage" in replies[2]


def test_two_apps_share_nothing(client):
    other = create_app(ServeConfig(loader=tiny_loader))
    with TestClient(other) as second:
        assert other.state.explorer.wait(120)
        reference = client.post("/api/upload", content=png_file(np.full((70, 70, 3), 9, np.uint8))).json()[
            "image"
        ]
        assert client.get("/api/image.png", params={"ref": reference}).status_code == 200
        assert second.get("/api/image.png", params={"ref": reference}).status_code == 404
        assert reference not in second.get("/api/images").json()["uploads"]
    assert other.state.explorer is not client.app.state.explorer


def test_openapi_documents_every_api_route_and_its_limits(app, client):
    schema = client.get("/openapi.json").json()
    routes = {
        (method.lower(), route.path)
        for route in app.routes
        if route.path.startswith("/api/")
        for method in route.methods
        if method != "HEAD"
    }
    assert {(m, p) for p, ops in schema["paths"].items() for m in ops} == routes
    body = schema["paths"]["/api/project"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["rule"]["enum"] == ["deconvnet", "guided", "gradient"]
    assert body["required"] == ["layer", "units"]
    params = {p["name"]: p["schema"] for p in schema["paths"]["/api/arithmetic"]["get"]["parameters"]}
    assert params["stride"]["maximum"] == 4 and client.get("/api/arithmetic?stride=5").status_code == 422


def test_the_page_shows_progress_while_the_model_loads():
    release = threading.Event()

    def slow_loader(progress):
        progress.start("training", total=12, message="training the demo model")
        progress.advance(5)
        assert release.wait(60)
        return tiny_loader(progress)

    slow = create_app(ServeConfig(loader=slow_loader))
    with TestClient(slow) as client:
        for _ in range(200):
            status = client.get("/api/status").json()
            if status["progress"]["done"] == 5:
                break
            threading.Event().wait(0.02)
        assert status["state"] == "loading" and status["progress"]["total"] == 12
        busy = client.post("/api/activations", json={"image": "dataset:0", "layer": LAYER})
        assert busy.status_code == 503 and "training the demo model" in busy.json()["error"]
        assert client.get("/api/arithmetic").status_code == 200  # needs no model
        release.set()
        assert slow.state.explorer.wait(120)
        assert client.get("/api/status").json()["state"] == "ready"


def test_a_malicious_weight_file_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    weights = tmp_path / "evil.pt"
    weights.write_bytes(pickle.dumps({"state_dict": Payload()}))
    folder = tmp_path / "images"
    for name in ("a", "b"):
        (folder / "train" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 40), (60 * i, 80, 120)).save(folder / "train" / name / f"{i}.png")
    evil = create_app(ServeConfig(model="zfnet-mini", weights=weights, data=str(folder), split="train"))
    with TestClient(evil) as client:
        assert not evil.state.explorer.wait(120)
        status = client.get("/api/status").json()
    assert status["state"] == "error" and "evil.pt" in status["progress"]["message"]
    assert not marker.exists()


def test_binding_anything_but_loopback_warns():
    from deconvlab.cli.serve import binding_warning

    assert binding_warning("127.0.0.1", 8000) is None and binding_warning("localhost", 8000) is None
    warning = binding_warning("0.0.0.0", 8000)
    assert warning.startswith("WARNING") and "0.0.0.0:8000" in warning and "no authentication" in warning


def test_the_cli_refuses_weights_without_a_model(tmp_path):
    from typer.testing import CliRunner

    from deconvlab.cli import app as cli

    result = CliRunner().invoke(cli, ["serve", "--weights", str(tmp_path / "w.pt")])
    assert result.exit_code != 0 and "--weights needs --model" in result.output


def test_json_body_size_is_limited_too(client):
    big = json.dumps({"layer": LAYER, "units": [{"image": "dataset:0", "channel": 0, "y": 0, "x": 0}] * 9000})
    response = client.post("/api/project", content=big.encode())
    assert response.status_code == 413 and "limit" in response.json()["error"]


def test_a_loopback_server_answers_only_loopback_host_names():
    from deconvlab.cli.serve import LOOPBACK_NAMES

    guarded = create_app(ServeConfig(loader=tiny_loader, allowed_hosts=LOOPBACK_NAMES))
    with TestClient(guarded, base_url="http://127.0.0.1:8000") as client:
        assert client.get("/api/arithmetic").status_code == 200
        assert client.get("/api/arithmetic", headers={"host": "localhost:8000"}).status_code == 200
        rebound = client.get("/api/arithmetic", headers={"host": "attacker.example:8000"})  # DNS rebinding
        assert rebound.status_code == 400


def test_training_progress_counts_the_epochs_in_metrics_json(tmp_path):
    from deconvlab.serve.loading import epochs_done

    metrics = tmp_path / "metrics.json"
    assert epochs_done(metrics) == 0  # not written yet
    metrics.write_text(json.dumps({"config": {}, "epochs": [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]}))
    assert epochs_done(metrics) == 3
    metrics.write_text("{half a file")
    assert epochs_done(metrics) == 0
