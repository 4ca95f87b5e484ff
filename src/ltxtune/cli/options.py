"""What several commands share: option parsers (each option is parsed in one place), error exits,
and `command_from`, which turns a settings dataclass into a typer command.

A settings dataclass declares each option once, as a field made by `option(...)`; `command_from`
gives typer a function whose parameters are those fields, and calls the command's body with one
filled-in settings object. Adding an option to `serve` and `worker` is adding one field.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import typing
from pathlib import Path
from typing import Any, Callable, TypeVar

import typer

from ltxtune.specs.common import Family
from ltxtune.specs.pricing import PriceTable

S = TypeVar("S")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `error: message` on stderr; raise what this returns to exit with `code`."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise fail(f"{what} {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise fail(f"{what} {path} is not valid JSON: {error}") from None


def parse_prices(path: Path | None) -> PriceTable:
    """`--prices FILE`: the default table with the file's entries applied; exit 2 if it is bad."""
    if path is None:
        return PriceTable()
    try:
        return PriceTable().overridden(read_json(path, "price table"))
    except ValueError as error:
        raise fail(f"price table {path}: {error}") from None


def parse_gpus(text: str | None) -> tuple[str, ...]:
    """`--gpus 0,2`: CUDA device ids, one per slot; empty leaves CUDA_VISIBLE_DEVICES alone."""
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def parse_model(model: str | None) -> Family | None:
    """`--model`: a family name overriding the request's, or weights to train on (an original single-file
    checkpoint or a diffusers directory) whose family is read from them. Weights then become what that
    family loads, through its environment variable (inherited by training children)."""
    if model is None:
        return None
    if model in {f.value for f in Family}:
        return Family(model)
    path = Path(model).expanduser()
    if not path.exists():
        raise fail(f"--model must be one of: {', '.join(f.value for f in Family)}, or a checkpoint file or "
                   f"diffusers directory ({model} does not exist)")
    from ltxtune.models.families import ModelNotAvailable
    from ltxtune.models.family_check import identify

    try:
        family = identify(path)
    except ModelNotAvailable as error:
        raise fail(f"--model {model}: {error}") from None
    os.environ[family.env_var] = str(path.resolve())
    return Family(family.name)


MEMORY_HELP = ("How the frozen base is stored: auto (the fastest that fits), bf16, fp8, int8, nf4 (CUDA), "
               "each optionally +offload (e.g. fp8+offload: some blocks stream from host memory).")


def check_memory(value: str) -> str:
    """`--memory`: refused when the option is parsed, before any work."""
    from ltxtune.specs.memory import parse_memory

    try:
        parse_memory(value)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return value


MEMORY = typer.Option("auto", "--memory", callback=check_memory, help=MEMORY_HELP)


def setup_logging(verbose: bool, log_format: str = "text") -> None:
    from ltxtune.logs import setup_logging as setup

    try:
        setup(verbose, log_format)
    except ValueError as error:
        raise fail(str(error)) from None


PRICES_HELP = "A JSON file overriding entries of the price table (see ltxtune.specs.pricing.PriceTable)."
PRICES = typer.Option(None, "--prices", help=PRICES_HELP)
ALLOW_PRIVATE_HELP = "Allow dataset and webhook URLs on loopback and private networks."
ALLOW_PRIVATE = typer.Option(False, "--allow-private-urls", help=ALLOW_PRIVATE_HELP)
MODEL_HELP = ("Override the model family (ltx2, ltx23, tiny), or weights to train on: an original "
              "single-file checkpoint or a diffusers directory (the family is read from it).")


def option(default: Any, *names: str, **kwargs: Any) -> Any:
    """A settings field that is also a command-line option (`typer.Option(default, *names, **kwargs)`)."""
    return dataclasses.field(default=default, metadata={"option": typer.Option(default, *names, **kwargs)})


def command_from(settings_type: type[S], body: Callable[[S], None], doc: str | None = None) -> Callable[..., None]:
    """A typer command taking one option per field of `settings_type` and calling `body(settings)`."""
    hints = typing.get_type_hints(settings_type)
    parameters = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.metadata["option"], annotation=hints[f.name])
        for f in dataclasses.fields(settings_type)  # type: ignore[arg-type]
    ]

    def command(**values: Any) -> None:
        body(settings_type(**values))

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__doc__ = doc or body.__doc__
    command.__name__ = body.__name__
    return command
