"""Benchmark: ``deconvlab animate --gallery`` (every case, GIF + animated SVG, index.html).

Goal: the whole gallery in under 30 s on a 2-core machine. Rendering is single-threaded, so the
process CPU time is what an idle machine's wall time would be; on a shared machine the wall time is
longer, and this script prints both, with the load average, so the README can say which is which.

Peer, measured in the same run on the same frames (GIF only, every row): the straightforward way to
draw them, each frame redrawn from scratch and saved with Pillow's default (adaptive, per-frame)
GIF palette. Printed: ratio = peer / ours, per clock.

    .venv/bin/python benchmarks/gallery.py              # ~1 minute on 2 shared cores
    .venv/bin/python benchmarks/gallery.py --skip-peer  # the gallery alone
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from deconvlab.arithmetic.animate import GALLERY, build_animation, render_gallery, save
from deconvlab.arithmetic.animate.gallery import row_cases
from deconvlab.arithmetic.animate.layout import compute_layout
from deconvlab.arithmetic.animate.raster import FRAME_MS, render_frame


def clocks(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def gallery_animations():
    return [(stem, build_animation(case)) for row in GALLERY for stem, _, case in row_cases(row)]


def ours_gif(directory: Path) -> None:
    for stem, animation in gallery_animations():
        save(animation, directory / f"{stem}.gif")


def peer_gif(directory: Path) -> None:
    """Each frame drawn from scratch, Pillow's default GIF quantisation (adaptive palette per frame)."""
    for stem, animation in gallery_animations():
        layout = compute_layout(animation.frames)
        images = [render_frame(frame, layout) for frame in animation.frames]
        images[0].save(directory / f"{stem}.gif", save_all=True, append_images=images[1:],
                       duration=FRAME_MS, loop=0)


def folder_size(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-peer", action="store_true", help="time the gallery only")
    args = parser.parse_args()
    frames = sum(len(animation.frames) for _, animation in gallery_animations())
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (1 min) at start")
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "gallery"
        wall, cpu = clocks(lambda: render_gallery(full))
        count = len(list(full.glob("*.gif")))
        print(f"full gallery: {count} animations, {frames} frames, GIF + SVG + index.html, "
              f"{folder_size(full) / 1e6:.1f} MB")
        per_frame = 1000 * cpu / frames
        print(f"  wall {wall:.1f} s, CPU {cpu:.1f} s ({per_frame:.1f} ms CPU per frame); goal < 30 s")
        if args.skip_peer:
            return
        (Path(tmp) / "ours").mkdir()
        (Path(tmp) / "peer").mkdir()
        ours = clocks(lambda: ours_gif(Path(tmp) / "ours"))
        peer = clocks(lambda: peer_gif(Path(tmp) / "peer"))
        print("GIFs only, same frames:      wall s   CPU s")
        print(f"  deconvlab (incremental):  {ours[0]:6.1f}  {ours[1]:6.1f}")
        print(f"  peer (redraw, adaptive):  {peer[0]:6.1f}  {peer[1]:6.1f}")
        print(f"  ratio peer / deconvlab:   {peer[0] / ours[0]:6.2f}  {peer[1] / ours[1]:6.2f}")
    print(f"load average {os.getloadavg()[0]:.1f} (1 min) at the end")


if __name__ == "__main__":
    main()
