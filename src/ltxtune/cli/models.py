"""`ltxtune models ...`: model families and base weights."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from ltxtune.cli.options import fail

app = typer.Typer(no_args_is_help=True, help="Model families and base weights.")


@app.command("list")
def models_list() -> None:
    """The model families and where their weights come from."""
    from ltxtune.models.families import list_families

    for family in list_families():
        if family.default_repo_id:
            source = f"${family.env_var} (a directory, a {family.single_file_name} file, or default {family.default_repo_id})"
        else:
            source = f"built in code, or ${family.env_var}"
        typer.echo(f"{family.name:6} {family.title}: {source}")


@app.command("inspect")
def models_inspect(path: Path = typer.Argument(..., help="An original single-file checkpoint or a diffusers directory.")) -> None:
    """What a checkpoint or directory is: family, components, parameters, dtypes, config, trainable or not."""
    from ltxtune.models.families import ModelNotAvailable
    from ltxtune.models.inspect import format_inspection, inspect_weights

    try:
        typer.echo(format_inspection(inspect_weights(path)))
    except ModelNotAvailable as error:
        raise fail(str(error), 1) from None


@app.command("convert")
def models_convert(
    path: Path = typer.Argument(..., help="An original single-file checkpoint (e.g. ltx-2.3-22b-dev.safetensors)."),
    out_dir: Path = typer.Argument(..., help="The diffusers-format pipeline directory to write."),
) -> None:
    """Write a diffusers-format pipeline directory (LTX2Pipeline.from_pretrained loads it) from an original checkpoint."""
    from ltxtune.models.families import ModelNotAvailable
    from ltxtune.models.inspect import convert_checkpoint

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        converted = convert_checkpoint(path, out_dir)
    except ModelNotAvailable as error:
        raise fail(str(error), 1) from None
    typer.echo(f"wrote {converted.directory}")
    if converted.missing:
        typer.echo(f"missing: {', '.join(converted.missing)}: {converted.message} Until then, pass them to "
                   "LTX2Pipeline.from_pretrained(..., text_encoder=..., tokenizer=...).", err=True)


@app.command("export")
def models_export(
    family: str = typer.Argument(..., help="Only `tiny` can be exported: the real families are downloaded."),
    directory: Path = typer.Argument(..., help="Where to write the diffusers-format pipeline."),
) -> None:
    """Write the tiny base model as a diffusers pipeline directory (LTX2Pipeline.from_pretrained loads it)."""
    if family != "tiny":
        raise fail("only the tiny family is built in code; ltx2 and ltx23 weights are downloaded (see `ltxtune models list`)")
    from ltxtune.models.tiny import export_tiny

    typer.echo(f"wrote {export_tiny(directory)}")
