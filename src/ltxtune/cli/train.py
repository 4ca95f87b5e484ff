"""Commands that read one request file: validate | price | prepare | train."""

from __future__ import annotations

from pathlib import Path

import typer

from ltxtune.cli.options import ALLOW_PRIVATE, MEMORY, MODEL_HELP, PRICES, fail, parse_model, parse_prices, read_json
from ltxtune.protocols import PROTOCOLS, UnknownEndpoint, build_plan
from ltxtune.specs import PriceTable, RequestInvalid
from ltxtune.specs.plan import TrainingPlan

ENDPOINT_HELP = " or ".join(protocol.endpoint_help for protocol in PROTOCOLS).capitalize() + "."
ENDPOINT = typer.Argument(..., help=ENDPOINT_HELP)
REQUEST = typer.Argument(..., help="The request body as JSON.")
LOCAL_REQUEST = typer.Argument(..., help="The request body as JSON; the dataset may be a local zip.")
DEFAULT_CACHE = Path.home() / ".cache" / "ltxtune"


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
    plan = resolve_local_source(plan_from_file(endpoint, request), request)
    family = parse_model(model)
    if family is not None:
        plan = plan.with_family(family)
    if continue_from is not None:
        if not continue_from.is_file():
            raise fail(f"--continue-from {continue_from} does not exist")
        plan = plan.model_copy(update={"lora": plan.lora.model_copy(update={"init_from": str(continue_from.resolve())})})
    return plan


def validate(endpoint: str = ENDPOINT, request: Path = REQUEST, memory: str = MEMORY) -> None:
    """Print the normalised training plan as JSON (exit 0), or every error (exit 2).

    The memory estimate of each phase goes to stderr (stdout stays the plan)."""
    plan = plan_from_file(endpoint, request)
    typer.echo(plan.to_json())
    for line in memory_lines(plan, memory):
        typer.echo(line, err=True)


def price(endpoint: str = ENDPOINT, request: Path = REQUEST, prices: Path | None = PRICES) -> None:
    """Print what the request costs: amount, currency, billed units, formula."""
    plan = plan_from_file(endpoint, request, parse_prices(prices))
    typer.echo(plan.price.model_dump_json(indent=2))


def prepare(
    endpoint: str = ENDPOINT,
    request: Path = LOCAL_REQUEST,
    out: Path = typer.Option(..., "--out", help="Work folder: the download, extraction and prepared/ go here."),
    allow_private_urls: bool = ALLOW_PRIVATE,
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


def train(
    endpoint: str = ENDPOINT,
    request: Path = LOCAL_REQUEST,
    out: Path = typer.Option(..., "--out", help="Work folder; run the same command again to resume."),
    model: str | None = typer.Option(None, "--model", help=MODEL_HELP),
    continue_from: Path | None = typer.Option(None, "--continue-from", help="Start from an existing LoRA of the same family."),
    cache_dir: Path = typer.Option(DEFAULT_CACHE, "--cache-dir", help="Where encoded latents and captions are cached."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    allow_private_urls: bool = ALLOW_PRIVATE,
    memory: str = MEMORY,
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads for torch (default: this process's share of "
                                       "the cores it may use; also LTXTUNE_THREADS)."),
) -> None:
    """Run a whole training job: prepare, cache, train, previews, outputs."""
    from ltxtune.data.errors import DatasetError
    from ltxtune.events import RunSettings
    from ltxtune.models.families import ModelNotAvailable
    from ltxtune.models.memory import MemoryPresetError
    from ltxtune.progress import ConsoleProgress
    from ltxtune.training.job import run_job

    plan = plan_for_run(endpoint, request, model, continue_from)
    settings = RunSettings(cache_dir=cache_dir, allow_local_files=True, allow_private_urls=allow_private_urls, device=device,
                           memory=memory, threads=threads)
    with ConsoleProgress() as progress:
        try:
            outputs = run_job(plan, out, settings=settings, on_event=progress)
        except (DatasetError, ModelNotAvailable, MemoryPresetError) as error:
            raise fail(getattr(error, "message", str(error)), 1) from None
    typer.echo("\nFiles written:")
    for label, path in [("lora_file", outputs.lora_path), ("config_file", outputs.config_path),
                        ("video", outputs.reel_path), ("debug_dataset", outputs.debug_dataset_path)]:
        if path is not None:
            typer.echo(f"  {label:14} {path}")
    for checkpoint in outputs.checkpoints if plan.checkpoints.deliver_each else ():
        typer.echo(f"  epoch {checkpoint.index:<8} {checkpoint.lora_path} (step {checkpoint.step})")
    typer.echo(f"  price          {plan.price.amount} {plan.price.currency} at the hosted rate ({plan.price.formula})")


def register(app: typer.Typer) -> None:
    for command in (validate, price, prepare, train):
        app.command()(command)
