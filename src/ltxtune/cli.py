"""The `ltxtune` command line: validate | price | prepare | train | models | serve | worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ltxtune.specs import ENDPOINTS, PriceTable, RequestInvalid, UnknownEndpoint, build_plan
from ltxtune.specs.plan import TrainingPlan

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Train LoRA adapters for LTX-2 / LTX-2.3 from the request shapes of the hosted trainers.",
)

ENDPOINT_HELP = "A fal endpoint id (" + ", ".join(e for e in ENDPOINTS if e != "civitai") + ") or `civitai` for a workflow body."
PRICES_HELP = "A JSON file overriding entries of the price table (see ltxtune.specs.pricing.PriceTable)."


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise fail(f"{what} {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise fail(f"{what} {path} is not valid JSON: {error}") from None


def load_prices(path: Path | None) -> PriceTable:
    table = PriceTable()
    if path is None:
        return table
    try:
        return table.overridden(read_json(path, "price table"))
    except ValueError as error:
        raise fail(f"price table {path}: {error}") from None


def plan_from_file(endpoint: str, request_path: Path, prices: PriceTable | None = None) -> TrainingPlan:
    """The plan of a request file, or exit 2 after printing every error, each with its field path."""
    body = read_json(request_path, "request")
    try:
        return build_plan(endpoint, body, prices)
    except UnknownEndpoint as error:
        raise fail(str(error)) from None
    except RequestInvalid as error:
        typer.echo(f"{request_path}: {len(error.issues)} error(s) for {endpoint}:", err=True)
        for issue in error.issues:
            typer.echo(f"  {issue.path}: {issue.msg}", err=True)
        raise typer.Exit(2) from None


@app.command()
def validate(
    endpoint: str = typer.Argument(..., help=ENDPOINT_HELP),
    request: Path = typer.Argument(..., help="The request body as JSON."),
) -> None:
    """Print the normalised training plan as JSON (exit 0), or every error (exit 2)."""
    plan = plan_from_file(endpoint, request)
    typer.echo(plan.to_json())


@app.command()
def price(
    endpoint: str = typer.Argument(..., help=ENDPOINT_HELP),
    request: Path = typer.Argument(..., help="The request body as JSON."),
    prices: Path | None = typer.Option(None, "--prices", help=PRICES_HELP),
) -> None:
    """Print what the request costs: amount, currency, billed units, formula."""
    plan = plan_from_file(endpoint, request, load_prices(prices))
    typer.echo(plan.price.model_dump_json(indent=2))


if __name__ == "__main__":
    app()
