"""The child process a job runs in (multiprocessing, spawn).

The worker starts one per run so that an out-of-memory kill, a segfault or a leak in the trainer
ends that run alone. The child:
- dies with its parent (Linux `PR_SET_PDEATHSIG`, and `should_stop` also turns true when the parent
  is gone), so a killed worker leaves no orphan training;
- holds an exclusive `flock` on `<work dir>/.lock` while it runs, so two runs of one job never
  touch its work dir at once, even if a lease was reclaimed while an old run was still exiting;
- calls the runner (`module:function` or `/path/file.py:function`, default
  `ltxtune.training.job:run_job`) and sends its events, then one final message, up a pipe:
  `EventMessage` ... then `Done` | `StoppedMessage` | `Failed`.
"""

from __future__ import annotations

import ctypes
import fcntl
import importlib
import importlib.util
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ltxtune.errors import ErrorKind, JobError, is_disk_full
from ltxtune.events import CheckpointSaved, Event, JobOutputs, Progress, RunSettings, Stopped

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class EventMessage:
    """An event of the run (log line, progress, checkpoint)."""

    event: Event


@dataclass(frozen=True)
class Done:
    outputs: JobOutputs


@dataclass(frozen=True)
class StoppedMessage:
    """The run stopped because it was asked to (cancel, timeout, shutdown)."""


@dataclass(frozen=True)
class Failed:
    """The run failed. `kind` is set for a `JobError` (the input is at fault: `retryable` False);
    None for an infrastructure failure, which is retried."""

    message: str
    kind: ErrorKind | None = None
    field: str | None = None
    retryable: bool = True


ChildMessage = EventMessage | Done | StoppedMessage | Failed


def failure_message(error: BaseException, where: str = "the start") -> Failed:
    """What the parent is told of a failure; `where`: the phase the run last reported."""
    if isinstance(error, JobError):
        return Failed(error.message, kind=error.kind, field=error.field, retryable=error.retryable)
    if is_disk_full(error):  # the same run would fill the disk again: end it, naming where
        return Failed(f"out of disk space at {where}; free space in the data dir and submit again", kind=ErrorKind.INTERNAL, retryable=False)
    return Failed(f"{type(error).__name__}: {error_message(error)}")


def describe_progress(event: Any, where: str) -> str:
    """Where a run is, after `event`: `train step 40`, `the prepare phase`, ..."""
    if isinstance(event, Progress):
        return f"{event.phase} step {event.done}" if event.phase in ("train", "validate") else f"the {event.phase} phase"
    if isinstance(event, CheckpointSaved):
        return f"saving the checkpoint of step {event.step}"
    return where


@dataclass(frozen=True)
class ChildArgs:
    runner: str
    plan_json: str
    work_dir: Path
    settings: RunSettings
    parent_pid: int
    env: dict[str, str] = field(default_factory=dict)
    lock_timeout_s: float = 120.0


def load_runner(spec: str) -> Callable[..., Any]:
    """`package.module:function` or `/path/to/file.py:function`."""
    target, _, name = spec.rpartition(":")
    if not target or not name:
        raise ValueError(f"runner must look like module:function; got {spec!r}")
    if target.endswith(".py"):
        path = Path(target)
        module_spec = importlib.util.spec_from_file_location(f"ltxtune_runner_{path.stem}", path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot load runner file {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    return getattr(module, name)


def error_message(error: BaseException) -> str:
    message = getattr(error, "message", None)
    if isinstance(message, str) and message:
        return message
    if error.args and isinstance(error.args[0], str):
        return error.args[0]
    return str(error) or type(error).__name__


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass
    if os.getppid() != parent_pid:  # the parent died before we could ask
        os._exit(1)


def _lock_work_dir(work_dir: Path, timeout_s: float, should_stop: Callable[[], bool]) -> int:
    work_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(work_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if should_stop():
                raise Stopped("stopped while waiting for the work dir") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"work dir {work_dir} is still in use by another run") from None
            time.sleep(0.2)


def child_main(args: ChildArgs, conn: Any, stop_event: Any) -> None:
    os.environ.update(args.env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the worker, which stops us cleanly
    _die_with_parent(args.parent_pid)
    send_lock = threading.Lock()

    def send(message: ChildMessage) -> None:
        with send_lock:
            conn.send(message)

    def should_stop() -> bool:
        return stop_event.is_set() or os.getppid() != args.parent_pid

    where = "the start"
    try:
        _lock_work_dir(args.work_dir, args.lock_timeout_s, should_stop)
        from ltxtune.specs.plan import TrainingPlan

        run_job = load_runner(args.runner)
        plan = TrainingPlan.from_json(args.plan_json)
        def on_event(event: Any) -> None:
            nonlocal where
            where = describe_progress(event, where)
            send(EventMessage(event))

        outputs = run_job(plan, args.work_dir, settings=args.settings, on_event=on_event, should_stop=should_stop)
        where = "writing the outputs"
        send(Done(outputs))
    except Stopped:
        send(StoppedMessage())
    except BaseException as error:  # noqa: BLE001 - every failure is reported to the parent
        message = failure_message(error, where)
        if message.retryable:
            traceback.print_exc(file=sys.stderr)
        send(message)
    finally:
        try:
            conn.close()
        except OSError:
            pass
