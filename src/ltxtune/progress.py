"""Show a job's events on the terminal: a live bar for long phases, log lines for the rest."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ltxtune.events import CheckpointSaved, Event, LogLine, Progress

PHASE_LABELS = {"prepare": "preparing clips", "cache": "encoding", "train": "training", "validate": "previews"}


class ConsoleProgress:
    """An `on_event` sink: one progress bar per phase (step/total, loss, s/step, tokens/s, MFU and
    peak memory on GPU, ETA)."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> "ConsoleProgress":
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def __call__(self, event: Event) -> None:
        if isinstance(event, LogLine):
            style = {"WARNING": "yellow", "ERROR": "red"}.get(event.level, "")
            self.bar.console.print(f"[{style}]{event.message}[/{style}]" if style else event.message, markup=bool(style), highlight=False)
        elif isinstance(event, Progress):
            if event.phase not in self.tasks:
                self.tasks[event.phase] = self.bar.add_task(PHASE_LABELS.get(event.phase, event.phase), total=event.total, detail="")
            parts = [f"loss {event.loss:.4f}"] if event.loss is not None else []
            detail = "  ".join(parts + event.speed_parts())
            self.bar.update(self.tasks[event.phase], completed=event.done, total=event.total, detail=detail)
        elif isinstance(event, CheckpointSaved):
            self.bar.console.print(f"checkpoint {event.index} at step {event.step}: {event.lora_path}", highlight=False)
