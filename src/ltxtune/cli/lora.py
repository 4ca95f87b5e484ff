"""`ltxtune lora ...`: LoRA files."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ltxtune.cli.options import fail

app = typer.Typer(no_args_is_help=True, help="Inspect LoRA files.")


@app.command("check")
def lora_check(
    file: Path = typer.Argument(..., help="A LoRA .safetensors file (ComfyUI layout, as ltxtune writes it)."),
    family: str | None = typer.Option(None, "--family", help="ltx2, ltx23 or tiny; default: the file's own metadata."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check a LoRA against a family's full-size architecture: exit 0 ok, 1 failed, 2 unreadable input."""
    from ltxtune.models.lora_check import LoraCheckInputError, check_lora

    try:
        report = check_lora(file, family=family)
    except LoraCheckInputError as error:
        raise fail(str(error)) from None
    typer.echo(json.dumps(report.as_json(), indent=2) if as_json else "\n".join(report.summary_lines()))
    raise typer.Exit(0 if report.ok else 1)
