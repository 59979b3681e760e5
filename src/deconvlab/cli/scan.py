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
from deconvlab.cli._model import INPUT_SIZE, MEAN, STD, WEIGHTS, load_cli_model, model_option


@app.command()
def scan(
    out: Path = typer.Option(..., "--out", help="Folder for topk.json and the progress checkpoints."),
    model: str = model_option(),
    weights: str | None = WEIGHTS,
    data: str = typer.Option(
        "builtin",
        "--data",
        help="'builtin', an image folder (<folder>/<class>/* or flat), a text file of image paths, or tar "
        "shards ('shards/train-{000000..000146}.tar', WebDataset layout).",
    ),
    split: str | None = typer.Option(
        None, "--split", help="train, val or test: one split of the data; default every image (builtin: val)."
    ),
    layers: str | None = typer.Option(
        None, "--layers", help="Comma-separated module names; default every conv."
    ),
    k: int = typer.Option(9, "--k", help="Images kept per channel."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted scan from its checkpoint."),
    checkpoint_every: int = typer.Option(
        20, "--checkpoint-every", help="Batches between progress checkpoints (what --resume continues from)."
    ),
    batch_size: int = typer.Option(64, "--batch-size"),
    num_workers: int = typer.Option(
        min(os.cpu_count() or 1, 8), "--num-workers", help="DataLoader processes decoding images."
    ),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision: autocast to --amp-dtype."),
    amp_dtype: str = typer.Option(
        "float16", "--amp-dtype", help="float16 (CUDA only) or bfloat16 (CUDA or CPU), with --amp."
    ),
    export: Path | None = typer.Option(
        None, "--export", help="Folder for each channel's top-k patches, their projections and index.html."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    input_size: int | None = INPUT_SIZE,
    mean: str | None = MEAN,
    std: str | None = STD,
) -> None:
    """Find, for every channel of the chosen layers, the k dataset images that excite it most."""
    from deconvlab.analyses.scan import RESULT_FILE, topk_scan
    from deconvlab.analyses.scan_distributed import process_group, rank_and_world

    try:
        with process_group():
            network = load_cli_model(model, weights, data, input_size, mean, std)
            dataset = _dataset(data, split, network)
            if export is not None and not callable(getattr(dataset, "image", None)):
                raise ValueError(f"--export: data={data!r} has no random access to its images (tar shards); "
                                 "export from a folder or a list of the same images")  # fmt: skip
            names = [name.strip() for name in layers.split(",") if name.strip()] if layers else None
            result = topk_scan(
                network,
                dataset,
                names,
                k=k,
                batch_size=batch_size,
                num_workers=num_workers,
                out=out,
                resume=resume,
                checkpoint_every=checkpoint_every,
                progress=progress,
                amp=amp_dtype if amp else False,
            )
            if rank_and_world()[0] == 0:
                typer.echo(str(out / RESULT_FILE))
                if export is not None:
                    from deconvlab.export import export_topk

                    typer.echo(str(export_topk(result, network, dataset, export)))
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


def _dataset(data: str, split: str | None, network):
    """The data, streamed: files are only listed here; each is decoded (or skipped) in a worker."""
    from deconvlab.data import load_dataset

    size = getattr(network, "input_size", (None,))[-1]
    return load_dataset(data, split, image_size=size, mean=network.mean, std=network.std, check=False)
