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
    memory: str = typer.Option("auto", "--memory", help="Memory preset to estimate: auto, bf16, fp8, int8, nf4, optionally +offload."),
) -> None:
    """Print the normalised training plan as JSON (exit 0), or every error (exit 2).

    The memory estimate of each phase goes to stderr (stdout stays the plan)."""
    plan = plan_from_file(endpoint, request)
    typer.echo(plan.to_json())
    for line in memory_lines(plan, memory):
        typer.echo(line, err=True)


def memory_lines(plan: TrainingPlan, memory: str) -> list[str]:
    """The planner's estimate for a preset; for `auto`, also what it picks on common GPU sizes."""
    from ltxtune.models.planner import GiB, MemoryDoesNotFit, choose_memory, estimate_memory, memory_summary_lines
    from ltxtune.specs.memory import parse_memory

    try:
        preset = parse_memory(memory)
    except ValueError as error:
        raise fail(f"--memory: {error}") from None
    lines = memory_summary_lines(estimate_memory(plan, plan.family.value, preset))
    if preset is None:
        picks = []
        for size in (80, 48, 32, 24):
            try:
                choice = choose_memory(plan, plan.family.value, size * GiB)
                blocks = f" ({choice.offload_blocks} blocks offloaded)" if choice.offload_blocks else ""
                picks.append(f"{size} GiB: {choice.preset.name}{blocks}")
            except MemoryDoesNotFit:
                picks.append(f"{size} GiB: does not fit")
        lines.append("auto picks by free GPU memory: " + "; ".join(picks))
    return lines


@app.command()
def price(
    endpoint: str = typer.Argument(..., help=ENDPOINT_HELP),
    request: Path = typer.Argument(..., help="The request body as JSON."),
    prices: Path | None = typer.Option(None, "--prices", help=PRICES_HELP),
) -> None:
    """Print what the request costs: amount, currency, billed units, formula."""
    plan = plan_from_file(endpoint, request, load_prices(prices))
    typer.echo(plan.price.model_dump_json(indent=2))


def resolve_local_source(plan: TrainingPlan, request_path: Path) -> TrainingPlan:
    """On the command line a dataset may be a local path, relative to the request file's folder."""
    url = plan.dataset.source_url
    if "://" in url or url.startswith("data:") or not url:
        return plan
    path = Path(url).expanduser()
    if not path.is_absolute():
        path = (request_path.parent / path).resolve()
    return plan.model_copy(update={"dataset": plan.dataset.model_copy(update={"source_url": str(path)})})


def plan_for_run(endpoint: str, request: Path, model: str | None, continue_from: Path | None) -> TrainingPlan:
    from ltxtune.specs.common import Family

    plan = resolve_local_source(plan_from_file(endpoint, request), request)
    if model is not None:
        try:
            plan = plan.with_family(Family(model))
        except ValueError:
            raise fail(f"--model must be one of: {', '.join(f.value for f in Family)}") from None
    if continue_from is not None:
        if not continue_from.is_file():
            raise fail(f"--continue-from {continue_from} does not exist")
        plan = plan.model_copy(update={"lora": plan.lora.model_copy(update={"init_from": str(continue_from.resolve())})})
    return plan


DEFAULT_CACHE = Path.home() / ".cache" / "ltxtune"


@app.command()
def prepare(
    endpoint: str = typer.Argument(..., help=ENDPOINT_HELP),
    request: Path = typer.Argument(..., help="The request body as JSON; the dataset may be a local zip."),
    out: Path = typer.Option(..., "--out", help="Work folder: the download, extraction and prepared/ go here."),
    allow_private_urls: bool = typer.Option(False, help="Allow fetching from loopback or private addresses."),
) -> None:
    """Fetch, check and fit the dataset exactly as a training run would, and summarise it."""
    from ltxtune.data.errors import DatasetError
    from ltxtune.data.prepare import prepare_dataset
    from ltxtune.data.summary import summarise
    from ltxtune.progress import ConsoleProgress

    plan = plan_for_run(endpoint, request, None, None)
    with ConsoleProgress() as progress:
        try:
            prepared = prepare_dataset(plan, out, allow_local_files=True, allow_private_urls=allow_private_urls, on_event=progress)
        except DatasetError as error:
            raise fail(error.message, 1) from None
    typer.echo(summarise(prepared))


@app.command()
def train(
    endpoint: str = typer.Argument(..., help=ENDPOINT_HELP),
    request: Path = typer.Argument(..., help="The request body as JSON; the dataset may be a local zip."),
    out: Path = typer.Option(..., "--out", help="Work folder; run the same command again to resume."),
    model: str | None = typer.Option(None, "--model", help="Override the model family: ltx2, ltx23 or tiny (no weights)."),
    continue_from: Path | None = typer.Option(None, "--continue-from", help="Start from an existing LoRA of the same family."),
    cache_dir: Path = typer.Option(DEFAULT_CACHE, "--cache-dir", help="Where encoded latents and captions are cached."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    allow_private_urls: bool = typer.Option(False, help="Allow fetching from loopback or private addresses."),
) -> None:
    """Run a whole training job: prepare, cache, train, previews, outputs."""
    from ltxtune.data.errors import DatasetError
    from ltxtune.models.families import ModelNotAvailable
    from ltxtune.progress import ConsoleProgress
    from ltxtune.events import RunSettings
    from ltxtune.training.job import run_job

    plan = plan_for_run(endpoint, request, model, continue_from)
    settings = RunSettings(cache_dir=cache_dir, allow_local_files=True, allow_private_urls=allow_private_urls, device=device)
    with ConsoleProgress() as progress:
        try:
            outputs = run_job(plan, out, settings=settings, on_event=progress)
        except (DatasetError, ModelNotAvailable) as error:
            raise fail(getattr(error, "message", str(error)), 1) from None
    typer.echo("\nFiles written:")
    for label, path in [("lora_file", outputs.lora_path), ("config_file", outputs.config_path),
                        ("video", outputs.reel_path), ("debug_dataset", outputs.debug_dataset_path)]:
        if path is not None:
            typer.echo(f"  {label:14} {path}")
    for checkpoint in outputs.checkpoints if plan.checkpoints.deliver_each else ():
        typer.echo(f"  epoch {checkpoint.index:<8} {checkpoint.lora_path} (step {checkpoint.step})")
    typer.echo(f"  price          {plan.price.amount} {plan.price.currency} at the hosted rate ({plan.price.formula})")


models_app = typer.Typer(no_args_is_help=True, help="Model families and base weights.")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list() -> None:
    """The model families and where their weights come from."""
    from ltxtune.models.families import list_families

    for family in list_families():
        source = f"${family.env_var} (default {family.default_repo_id})" if family.env_var else "built in code, no weights"
        typer.echo(f"{family.name:6} {family.title}: {source}")


@models_app.command("export")
def models_export(
    family: str = typer.Argument(..., help="Only `tiny` can be exported: the real families are downloaded."),
    directory: Path = typer.Argument(..., help="Where to write the diffusers-format pipeline."),
) -> None:
    """Write the tiny base model as a diffusers pipeline directory (LTX2Pipeline.from_pretrained loads it)."""
    if family != "tiny":
        raise fail("only the tiny family is built in code; ltx2 and ltx23 weights are downloaded (see `ltxtune models list`)")
    from ltxtune.models.tiny import export_tiny

    typer.echo(f"wrote {export_tiny(directory)}")


lora_app = typer.Typer(no_args_is_help=True, help="Inspect LoRA files.")
app.add_typer(lora_app, name="lora")


@lora_app.command("check")
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


def _register_service() -> None:
    from ltxtune.api.serve import register

    register(app)


_register_service()

if __name__ == "__main__":
    app()
