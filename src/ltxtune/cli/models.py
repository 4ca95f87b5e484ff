"""`ltxtune models ...`: model families and base weights."""

from __future__ import annotations

from pathlib import Path

import typer

from ltxtune.cli.options import fail

app = typer.Typer(no_args_is_help=True, help="Model families and base weights.")


@app.command("list")
def models_list() -> None:
    """The model families and where their weights come from."""
    from ltxtune.models.families import list_families

    for family in list_families():
        source = f"${family.env_var} (default {family.default_repo_id})" if family.env_var else "built in code, no weights"
        typer.echo(f"{family.name:6} {family.title}: {source}")


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
