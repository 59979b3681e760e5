"""``deconvlab scan``: the streaming top-k scan (one pass, all layers at once), resumable, torchrun-ready.

deconvlab scan --out runs/scan                                   # zfnet-mini, demo weights, builtin
deconvlab scan --model zfnet --weights zf.pt --data photos/ --layers features.0,features.4 --out s
torchrun --nproc-per-node 2 -m deconvlab scan --out runs/scan    # two processes, same topk.json
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from deconvlab.cli._app import app


@app.command()
def scan(
    out: Path = typer.Option(..., "--out", help="Folder for topk.json and the progress checkpoints."),
    model: str = typer.Option("zfnet-mini", "--model", help="A registered model (deconvlab.models)."),
    weights: Path | None = typer.Option(
        None, "--weights", help="Weight file; may be left out for zfnet-mini on builtin (the demo's network)."
    ),
    data: str = typer.Option("builtin", "--data", help="'builtin' or an image folder (<folder>/<class>/*)."),
    split: str | None = typer.Option(
        None, "--split", help="train, val or test: one split of the data; default every image (builtin: val)."
    ),
    layers: str | None = typer.Option(
        None, "--layers", help="Comma-separated module names; default every conv."
    ),
    k: int = typer.Option(9, "--k", help="Images kept per channel."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted scan from its checkpoint."),
    batch_size: int = typer.Option(64, "--batch-size"),
    num_workers: int = typer.Option(
        min(os.cpu_count() or 1, 8), "--num-workers", help="DataLoader processes decoding images."
    ),
    amp: bool = typer.Option(False, "--amp", help="float16 autocast (CUDA only)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Find, for every channel of the chosen layers, the k dataset images that excite it most."""
    from deconvlab.analyses.scan import RESULT_FILE, topk_scan
    from deconvlab.analyses.scan_distributed import process_group, rank_and_world

    try:
        with process_group():
            network = load_model(model, weights, data)
            dataset = _dataset(data, split, network)
            names = [name.strip() for name in layers.split(",") if name.strip()] if layers else None
            topk_scan(
                network,
                dataset,
                names,
                k=k,
                batch_size=batch_size,
                num_workers=num_workers,
                out=out,
                resume=resume,
                progress=progress,
                amp=amp,
            )
            if rank_and_world()[0] == 0:
                typer.echo(str(out / RESULT_FILE))
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


def load_model(name: str, weights: Path | None, data: str):
    """The model ``name`` with ``weights``; without weights, the demo's trained zfnet-mini on builtin."""
    from torch import nn

    from deconvlab.models import create, list_models, load_weights, read_state_dict

    if name not in list_models():
        raise ValueError(
            f"--model={name!r}: not a registered model; choose one of {', '.join(list_models())}"
        )
    if weights is None:
        if name != "zfnet-mini" or data != "builtin":
            raise ValueError(
                f"--weights: required for --model {name} --data {data} (only zfnet-mini on builtin "
                "has default weights, the demo's)"
            )
        from deconvlab.training import demo_model

        return demo_model()[0]
    state = read_state_dict(weights)
    linears = [
        module_name
        for module_name, m in create(name, num_classes=2).named_modules()
        if isinstance(m, nn.Linear)
    ]
    logits_key = f"{linears[-1]}.weight" if linears else None
    num_classes = state[logits_key].shape[0] if logits_key in state else 1000
    return load_weights(create(name, num_classes=num_classes), weights)


def _dataset(data: str, split: str | None, network):
    """The data, streamed: files are only listed here; each is decoded (or skipped) in a worker."""
    from deconvlab.data import load_dataset

    size = getattr(network, "input_size", (None,))[-1]
    return load_dataset(data, split, image_size=size, check=False)
