"""The explorer's API fuzzed from its own schema: Schemathesis against a real server on loopback.

A real uvicorn server (``background_server``) serves a small untrained zfnet-mini; once its model is
loaded and scanned, Schemathesis reads ``/openapi.json`` and sends generated requests to every
operation, valid and invalid, and checks each answer against the schema: no 5xx, a status the
operation declares, a body and a content type that match what it declares. Examples are bounded and
derandomized (Hypothesis' seed is fixed by the test's name), so a failure reproduces. New endpoints
are fuzzed as soon as they are in ``deconvlab.serve.api.ENDPOINTS``.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("uvicorn")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from deconvlab.data import BuiltinDataset  # noqa: E402
from deconvlab.models import create  # noqa: E402
from deconvlab.serve import Loaded, ServeConfig, background_server, create_app  # noqa: E402
from deconvlab.serve.api import ENDPOINTS  # noqa: E402
from deconvlab.serve.images import png_bytes  # noqa: E402
from deconvlab.serve.openapi import openapi_schema  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]
EXAMPLES = 20  # per operation: about a minute for the whole API on 2 cores


def small_loader(progress) -> Loaded:
    torch.manual_seed(0)
    model = create("zfnet-mini", num_classes=12)
    return Loaded(model=model, dataset=BuiltinDataset("val", 64, size=24, cache=False), name="fuzz")


@pytest.fixture(scope="module")
def server():
    app = create_app(ServeConfig(loader=small_loader, max_upload_bytes=100_000, max_image_pixels=1_000_000))
    with background_server(app) as url:
        assert app.state.explorer.wait(120), "the explorer did not load its model"
        yield url


schema = schemathesis.openapi.from_dict(openapi_schema(ENDPOINTS))


def test_the_server_describes_itself_with_the_fuzzed_schema(server):
    served = httpx.get(server + "openapi.json").json()
    assert served == schema.raw_schema


# One request per operation that succeeds on the small model: the generated ones rarely name a real
# layer or image, so these make sure every success body is checked against its schema too.
UNIT = {"image": "dataset:1", "channel": 3, "y": 2, "x": 1}
SUCCEEDS = [
    ("GET", "/api/status", {}),
    ("GET", "/api/images", {}),
    ("GET", "/api/image.png", {"query": {"ref": "sample:coffee"}}),
    (
        "POST",
        "/api/upload",
        {"body": png_bytes(np.full((9, 7, 3), 200, np.uint8)), "media_type": "image/png"},
    ),
    ("GET", "/api/units", {"query": {"layer": "features.4"}}),
    ("GET", "/api/units/grid.png", {"query": {"layer": "features.4", "channel": 0}}),
    (
        "POST",
        "/api/project",
        {"body": {"layer": "features.8", "units": [UNIT], "crop": True, "values": True}},
    ),
    ("POST", "/api/optimize", {"body": {"layer": "features.4", "channel": 0}}),
    ("POST", "/api/activations", {"body": {"image": "sample:camera", "layer": "features.0"}}),
    ("POST", "/api/occlusion", {"body": {"image": "dataset:2", "window": 32, "stride": 16}}),
    ("GET", "/api/arithmetic", {"query": {"input": 4, "transposed": "true", "stride": 2}}),
    ("GET", "/api/arithmetic/animation", {"query": {"format": "gif", "input": 3, "padding": 0}}),
]


def test_the_known_good_requests_cover_every_operation():
    assert {(method, path) for method, path, _ in SUCCEEDS} == {
        (method.upper(), path) for path, ops in schema.raw_schema["paths"].items() for method in ops
    }


@pytest.mark.parametrize("method, path, request_", SUCCEEDS, ids=[f"{m} {p}" for m, p, _ in SUCCEEDS])
def test_a_successful_answer_conforms_to_the_schema(server, method, path, request_):
    response = (
        schema[path][method].Case(**request_).call_and_validate(base_url=server.rstrip("/"), checks=CHECKS)
    )
    assert response.status_code == 200, response.text


def test_every_success_and_every_error_is_described():
    for path, operations in schema.raw_schema["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            for code, response in operation["responses"].items():
                assert response["description"] and response["content"], where
                for media_type, content in response["content"].items():
                    assert content["schema"], f"{where} {code} {media_type}: no schema"
                    if code != "200":
                        assert media_type == "application/json", f"{where} {code}: errors are JSON"


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_conforms_to_the_schema(case, server):
    case.call_and_validate(base_url=server.rstrip("/"), checks=CHECKS)
