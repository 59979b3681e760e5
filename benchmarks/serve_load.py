"""Many users at once on ``deconvlab serve``: latency per kind of request, errors, memory.

Starts the explorer in a child process (uvicorn on 127.0.0.1; zfnet-mini with seeded random weights
on the built-in val split by default, ``--demo`` for the trained demo model), then:

1. the idle median of one unit's projection (``POST /api/project``), requests one after another
   (before and after step 2, so that both see the same machine);
2. the same projection's median while an occlusion map (``POST /api/occlusion``, window 25, stride 1:
   1600 positions, the explorer's limit) runs in the slow lane. Goal (issue 15): under 3x the idle
   median;
3. ``--clients`` (50) concurrent clients sending a seeded mix of requests (projections, activation
   maps, images, unit grids, occlusions) until ``--requests`` (5,000) have been answered or
   ``--seconds`` have passed: p50/p95/p99 per kind, errors (goal: none besides declared 503s, which
   the client honours by waiting Retry-After), and the server's resident memory after 500 requests
   against at the end (goal, no leak: at most 10% more).

    python benchmarks/serve_load.py [--clients 50] [--requests 5000] [--seconds 300] [--demo]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

MIX = {"project": 50, "activations": 20, "image": 15, "grid": 10, "occlusion": 5}  # percent
LAYER = "features.8"


def serve(port: int, demo: bool) -> None:
    """The child process: the explorer on 127.0.0.1:port."""
    import torch
    import uvicorn

    from deconvlab.data import load_dataset
    from deconvlab.models import create
    from deconvlab.serve import Loaded, ServeConfig, create_app

    def random_weights(progress) -> Loaded:
        torch.manual_seed(0)
        model = create("zfnet-mini", num_classes=12)
        return Loaded(model, load_dataset("builtin", "val", 64), "zfnet-mini (random weights)")

    app = create_app(ServeConfig() if demo else ServeConfig(loader=random_weights))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def resident_mib(pid: int) -> float:
    """Resident memory of a process (Linux: /proc/PID/status, VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line")


def request_for(kind: str, rng: random.Random, dataset_size: int) -> tuple[str, str, dict]:
    """(method, path, keyword arguments) of one request of ``kind`` with seeded random choices."""
    image = f"dataset:{rng.randrange(dataset_size)}"
    if kind == "project":
        unit = {"image": image, "channel": rng.randrange(96), "y": rng.randrange(8), "x": rng.randrange(8)}
        return "POST", "/api/project", {"json": {"layer": LAYER, "units": [unit]}}
    if kind == "activations":
        return "POST", "/api/activations", {"json": {"image": image, "layer": "features.4"}}
    if kind == "image":
        return "GET", "/api/image.png", {"params": {"ref": image}}
    if kind == "grid":
        return "GET", "/api/units/grid.png", {"params": {"layer": LAYER, "channel": rng.randrange(96)}}
    return "POST", "/api/occlusion", {"json": {"image": image, "window": 16, "stride": 8}}


def percentiles(seconds: list[float]) -> str:
    if not seconds:
        return f"{'-':>9} {'-':>9} {'-':>9}"
    p50, p95, p99 = np.percentile(1000 * np.asarray(seconds), [50, 95, 99])
    return f"{p50:9.1f} {p95:9.1f} {p99:9.1f}"


def sequential_times(client, body: dict, count: int) -> list[float]:
    times = []
    for _ in range(count):
        began = time.perf_counter()
        client.post("/api/project", json=body).raise_for_status()
        times.append(time.perf_counter() - began)
    return times


async def load(url: str, args, dataset_size: int, pid: int) -> None:
    import httpx

    latencies: dict[str, list[float]] = {kind: [] for kind in MIX}
    busy: dict[str, int] = dict.fromkeys(MIX, 0)
    errors: list[str] = []
    answered, memory = 0, {}
    deadline = time.monotonic() + args.seconds
    kinds, weights = list(MIX), list(MIX.values())

    async def client(number: int, http: httpx.AsyncClient) -> None:
        nonlocal answered
        rng = random.Random(number)
        while answered < args.requests and time.monotonic() < deadline:
            kind = rng.choices(kinds, weights)[0]
            method, path, kwargs = request_for(kind, rng, dataset_size)
            began = time.perf_counter()
            try:
                response = await http.request(method, path, **kwargs)
            except httpx.TransportError as error:  # counted, not fatal: the other clients go on
                errors.append(f"{kind}: {type(error).__name__} {error}")
                answered += 1
                continue
            seconds = time.perf_counter() - began
            if response.status_code == 503 and "retry-after" in response.headers:
                busy[kind] += 1
                await asyncio.sleep(float(response.headers["retry-after"]))
                continue
            if response.status_code != 200:
                errors.append(f"{kind} {response.status_code}: {response.text[:200]}")
            latencies[kind].append(seconds)
            answered += 1
            if answered == 500:
                memory[500] = resident_mib(pid)

    # idle connections are dropped by the client (2 s) before uvicorn drops them (5 s): reusing one that
    # the server closes at that moment would fail as a transport error (a client waits Retry-After)
    limits = httpx.Limits(
        max_connections=args.clients, max_keepalive_connections=args.clients, keepalive_expiry=2
    )
    began = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        await asyncio.gather(*(client(number, http) for number in range(args.clients)))
    wall = time.perf_counter() - began
    memory[answered] = resident_mib(pid)

    print(
        f"\n{args.clients} concurrent clients: {answered} answers in {wall:.1f} s ({answered / wall:.0f}/s)"
    )
    print(f"{'kind':12} {'answers':>8} {'busy 503':>9} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}")
    for kind in MIX:
        print(f"{kind:12} {len(latencies[kind]):8d} {busy[kind]:9d} {percentiles(latencies[kind])}")
    print(f"errors (besides declared 503s): {len(errors)}" + "".join(f"\n  {e}" for e in errors[:5]))
    first, last = memory.get(500), memory[answered]
    if first is not None:
        change = 100 * (last / first - 1)
        verdict = "met" if change <= 10 else "NOT met"  # a fall is the allocator giving memory back
        print(
            f"server resident memory: {first:.0f} MiB after 500 answers, {last:.0f} MiB after {answered} "
            f"({change:+.1f}%; goal, no leak: at most +10%: {verdict})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=5000, help="stop after this many answers")
    parser.add_argument("--seconds", type=float, default=300, help="... or after this long")
    parser.add_argument("--idle", type=int, default=40, help="sequential projections per median")
    parser.add_argument("--demo", action="store_true", help="the trained demo model (trains on first use)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.demo)

    import httpx

    from deconvlab.serve.server import free_port

    port = free_port()
    child = [sys.executable, __file__, "--serve", str(port), *(["--demo"] if args.demo else [])]
    server = subprocess.Popen(child, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=300) as client:
            began = time.perf_counter()
            while True:
                try:
                    status = client.get("/api/status").json()
                except httpx.TransportError:
                    status = {"state": "starting"}
                if status["state"] == "error":
                    raise SystemExit(f"the server could not load its model: {status}")
                if status["state"] == "ready" and status["units_ready"]:
                    break
                time.sleep(0.2)
            print(f"server ready in {time.perf_counter() - began:.1f} s: {status['model']}, pid {server.pid}")
            unit = {"image": "dataset:3", "channel": 17, "y": 4, "x": 4}
            body = {"layer": LAYER, "units": [unit]}
            sequential_times(client, body, 10)  # warm-up
            idle = sequential_times(client, body, args.idle)  # and as many again afterwards

            occlusion_done = threading.Event()

            def occlusion() -> None:
                with httpx.Client(base_url=url, timeout=300) as other:
                    other.post("/api/occlusion", json={"image": "dataset:5", "window": 25, "stride": 1})
                occlusion_done.set()

            threading.Thread(target=occlusion, daemon=True).start()
            time.sleep(0.1)  # let the occlusion start
            during, count = [], 0
            while not occlusion_done.is_set() and count < args.idle:
                began = time.perf_counter()
                client.post("/api/project", json=body).raise_for_status()
                during.append(time.perf_counter() - began)
                count += 1
            still_running = not occlusion_done.is_set()
            occlusion_done.wait(300)
            idle = statistics.median(idle + sequential_times(client, body, args.idle))
            ratio = statistics.median(during) / idle
            print(
                f"projection median idle: {1000 * idle:.1f} ms ({2 * args.idle} requests, before and after)"
            )
            print(
                "projection median while a 1600-position occlusion runs: "
                f"{1000 * statistics.median(during):.1f} ms"
                f" ({len(during)} requests{'' if still_running else ', until it finished'}); "
                f"{ratio:.2f}x idle (goal under 3x: {'met' if ratio < 3 else 'NOT met'})"
            )
            size = status["dataset_size"]
        asyncio.run(load(url, args, size, server.pid))
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
