"""Latency of one unit's projection request to ``deconvlab serve`` on the demo model.

Serves the demo app (zfnet-mini trained on the built-in dataset; trained first if no cached
checkpoint exists) with uvicorn on 127.0.0.1, then times ``POST /api/project`` for one unit (the
strongest dataset unit of a conv5 channel, deconvnet, the whole 64x64 projection as a PNG) over
HTTP with a keep-alive client. The peer, measured in the same run on the same unit: the direct
library call ``deconvlab.engine.project`` (with the input's normalisation). Their ratio is what the
server adds: JSON parsing, checks, the activation read-out, PNG encoding, HTTP.

Goal (issue 8): median at most 200 ms on 2 CPU cores.

    python benchmarks/serve_latency.py [--requests 60] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def timed(call, repeats: int, warmup: int = 5) -> list[float]:
    """Seconds per call, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60, help="timed requests (and direct calls)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the goal is on 2 cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import httpx

    from deconvlab.data import normalize
    from deconvlab.engine import project
    from deconvlab.serve import ServeConfig, background_server, create_app

    app = create_app(ServeConfig())
    with background_server(app) as url:
        explorer = app.state.explorer
        began = time.perf_counter()
        if not explorer.wait(3600):
            raise SystemExit(f"the demo app did not load: {explorer.status()}")
        session = explorer.session()
        seconds = time.perf_counter() - began
        print(f"model ready (and units scanned) in {seconds:.1f} s: {session.loaded.name}")
        layer = list(session.layers)[-1]
        lists = explorer.topk().layers[layer]
        channel = int(np.argmax(lists.values[:, 0]))
        image, _, (y, x) = lists.entries(channel)[0]
        body = {"layer": layer, "units": [{"image": f"dataset:{image}", "channel": channel, "y": y, "x": x}]}
        print(f"unit: layer {layer}, channel {channel}, dataset image {image}, position ({y}, {x})")

        with httpx.Client(base_url=url, timeout=60) as client:
            def request() -> None:
                response = client.post("/api/project", json=body)
                response.raise_for_status()

            served = timed(request, args.requests)

        inputs = normalize(session.dataset.image(image))[None]
        rows = torch.tensor([[0, channel, y, x]])
        direct = timed(lambda: project(session.model, inputs, layer, rows), args.requests)

    rows_out = [("HTTP request (deconvlab serve)", served), ("direct project() call", direct)]
    print(f"\n{args.requests} timed calls each, torch threads = {torch.get_num_threads()}")
    print(f"{'':32} {'median ms':>10} {'p95 ms':>10}")
    for name, times in rows_out:
        print(f"{name:32} {1000 * statistics.median(times):10.1f} {1000 * percentile(times, 95):10.1f}")
    ratio = statistics.median(served) / statistics.median(direct)
    print(f"\nratio request / direct call (median): {ratio:.2f}x")
    median_ms = 1000 * statistics.median(served)
    print(f"goal: median <= 200 ms -> {'met' if median_ms <= 200 else 'NOT met'} ({median_ms:.1f} ms)")


if __name__ == "__main__":
    main()
