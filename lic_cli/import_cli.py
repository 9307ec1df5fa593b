"""`lic import`: weight files from checkpoints trained elsewhere."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import click


@click.command("import")
@click.argument("source")
@click.argument("checkpoints", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--arch", required=True, help="The checkpoints' architecture (the source's own name for it).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The lic weight file to write.")
@click.option("--lambdas", metavar="LIST", help="The rate-distortion trade-off each checkpoint was trained for, "
              "comma-separated (e.g. 0.0018,0.0035,0.0067): lets lic encode --refine sga optimise for it.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
def import_weights(source, checkpoints, arch, output, force, lambdas):
    """Turn checkpoints trained elsewhere into one lic weight file, a quality per checkpoint in the
    order given (lowest rate first, as -q 1, 2, ...).

    \b
    lic import compressai --arch mbt2018-mean q1.pth q2.pth q3.pth q4.pth -o mbt.pt
    lic encode photo.png -o photo.lic --weights mbt.pt -q 2     # the file says which model it holds
    lic decode photo.lic -o photo.png --weights mbt.pt

    \b
    Sources and architectures:
      compressai  bmshj2018-hyperprior, mbt2018-mean, mbt2018, cheng2020-anchor,
                  elic2022-official: CompressAI's zoo files (any key layout it has used), bare
                  state dicts and {"state_dict": ...} as its training example saves them
    Files decode bit-exactly on every machine: lic computes the probability tables itself and
    selects them in fixed point. docs/models.md, "Bring your CompressAI model", says what differs.
    """
    from models import zoo

    from .cli import fail, load_torch

    load_torch()
    if source not in zoo.IMPORTERS:
        fail(f"unknown source {source!r} (this lic imports from: {', '.join(sorted(zoo.IMPORTERS))})")
    architectures, importer = zoo.IMPORTERS[source]
    if arch not in architectures:
        fail(f"--arch {arch}: {source} architectures this lic imports: {', '.join(architectures)}")
    if output.exists() and not force:
        fail(f"{output} exists (use --force to overwrite)")
    try:
        trade_offs = tuple(float(v) for v in lambdas.split(",")) if lambdas else ()
        name, model, card = importer(arch, list(checkpoints), trade_offs)
    except ValueError as error:
        fail(str(error))
    card = {**card, "data": f"trained elsewhere ({source})",
            "exported": datetime.now(timezone.utc).strftime("%Y-%m-%d")}
    path = zoo.export_weights(model, name, output, card, half=False)
    click.echo(f"{path}: {name}, {len(checkpoints)} qualities", err=True)
