"""Latency of one unit's projection request to ``deconvlab serve`` on the demo model.

Serves the demo app (zfnet-mini trained on the built-in dataset; trained first if no cached
checkpoint exists) with uvicorn on 127.0.0.1, then times ``POST /api/project`` for one unit (the
strongest dataset unit of a conv5 channel, deconvnet, the whole 64x64 projection as a PNG) over
HTTP with a keep-alive client. The peer, measured in the same run on the same unit: the direct
library call ``deconvlab.engine.project`` (with the input's normalisation). Their ratio is what the
server adds: JSON parsing, checks, the activation read-out, PNG encoding, HTTP.

Goal (issue 8): median at most 200 ms on 2 CPU cores.

    python benchmarks/serve_latency.py [--requests 60] [--threads 2] [--random-weights | --weights FILE]

``--random-weights`` serves zfnet-mini with seeded random weights instead (same layers, same work
per request; no training needed), for a quick measurement; ``--weights FILE`` serves zfnet-mini with
that checkpoint (for example one of the demo run's ``epoch-XXX.pt``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def interleaved(calls: dict, repeats: int, warmup: int = 5) -> dict[str, list[float]]:
    """Seconds per call of each callable, taken in turn (so both see the same machine load)."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            began = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - began)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60, help="timed requests (and direct calls)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the goal is on 2 cores)")
    parser.add_argument("--random-weights", action="store_true", help="skip training: random zfnet-mini")
    parser.add_argument("--weights", help="serve zfnet-mini with this checkpoint instead of the demo model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import httpx

    from deconvlab.data import normalize
    from deconvlab.engine import project
    from deconvlab.serve import Loaded, ServeConfig, background_server, create_app

    def random_weights(progress) -> Loaded:
        from deconvlab.data import load_dataset
        from deconvlab.models import create

        torch.manual_seed(0)
        model = create("zfnet-mini", num_classes=12)
        return Loaded(model, load_dataset("builtin", "val", 64), "zfnet-mini (random weights)")

    if args.random_weights:
        config = ServeConfig(loader=random_weights)
    elif args.weights:
        config = ServeConfig(model="zfnet-mini", weights=args.weights)
    else:
        config = ServeConfig()
    app = create_app(config)
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

        inputs = normalize(session.dataset.image(image))[None]
        rows = torch.tensor([[0, channel, y, x]])
        with httpx.Client(base_url=url, timeout=60) as client:

            def request() -> None:
                response = client.post("/api/project", json=body)
                response.raise_for_status()

            times = interleaved(
                {
                    "HTTP request (deconvlab serve)": request,
                    "direct project() call": lambda: project(session.model, inputs, layer, rows),
                },
                args.requests,
            )

    served, direct = times.values()
    print(f"\n{args.requests} timed calls each, interleaved, torch threads = {torch.get_num_threads()}")
    print(f"{'':32} {'median ms':>10} {'p95 ms':>10}")
    for name, seconds in times.items():
        print(f"{name:32} {1000 * statistics.median(seconds):10.1f} {1000 * percentile(seconds, 95):10.1f}")
    ratio = statistics.median(served) / statistics.median(direct)
    print(f"\nratio request / direct call (median): {ratio:.2f}x")
    median_ms = 1000 * statistics.median(served)
    print(f"goal: median <= 200 ms -> {'met' if median_ms <= 200 else 'NOT met'} ({median_ms:.1f} ms)")


if __name__ == "__main__":
    main()
