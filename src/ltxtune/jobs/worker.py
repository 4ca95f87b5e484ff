"""The worker: claims queued jobs and runs each in a child process, one per GPU slot.

Embedded in `ltxtune serve`, or alone as `ltxtune worker` against the same store (a data dir, or
PostgreSQL and shared object storage for workers on many hosts); any number of workers may serve
one store. A worker registers itself (what it can run: `ltxtune.jobs.capacity`), claims only jobs
that fit, and wakes on the store's change notifications where it has them (PostgreSQL) or polls. For each job a supervisor thread:
- starts the child (`ltxtune.jobs.child`), reads its events and writes logs, progress, epochs and
  outputs to the store;
- sends heartbeats (a job whose heartbeat goes stale is reclaimed by any worker and resumed from its
  checkpoint in the kept work dir) and stops at once if its lease was taken over;
- sets the child's stop flag when a cancel is asked, the step `timeout` passes, or the worker shuts
  down (then the job goes back to the queue, to resume later);
- ends the job: succeeded (billed), failed for a `JobError` such as a bad dataset (not retried,
  billed 0), failed or retried for an infrastructure failure (any other exception, an
  out-of-memory kill, any death of the child; retried while `failures <= retries`), canceled or
  expired (partial work discarded).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from ltxtune.errors import ErrorKind, is_disk_full
from ltxtune.jobs.capacity import Capacity, visible_gpus
from ltxtune.jobs.child import ChildArgs, ChildMessage, Done, EventMessage, Failed, StoppedMessage, child_main, describe_progress
from ltxtune.jobs.config import ServiceConfig
from ltxtune.jobs.inputs import resolve_uploads
from ltxtune.jobs.service import Services
from ltxtune.jobs.store import Job, JobStatus
from ltxtune.specs.pricing import unbilled
from ltxtune.events import CheckpointSaved, JobOutputs, LogLine, Progress, RunSettings

log = logging.getLogger(__name__)
READ_INTERVAL_S = 0.2
CANCEL_CHECK_S = 0.5


def describe_exit(code: int | None) -> str:
    if code is None:
        return "the training process did not exit"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"the training process was killed by {name}{hint}"
    return f"the training process exited with code {code} without a result"


class Worker:
    def __init__(
        self, services: Services, *, slots: int | None = None, worker_id: str | None = None, capacity: Capacity | None = None
    ):
        self.services = services
        self.capacity = capacity or Capacity(gpus=tuple(visible_gpus(services.config.gpus)))
        self.started_at = time.time()
        self._unsubscribe: Callable[[], None] = lambda: None
        self.config: ServiceConfig = services.config
        self.slots = self.config.workers if slots is None else slots
        self.worker_id = worker_id or f"worker-{uuid.uuid4().hex[:12]}"
        self._runs: dict[str, JobRun] = {}
        self.step_seconds: dict[str, float] = {}  # job id -> the last reported seconds per training step
        self._free_slots = list(range(self.slots))
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> None:
        self._unsubscribe = self.services.store.subscribe(lambda job_id: self._wake.set())
        self._thread = threading.Thread(target=self._loop, name=f"ltxtune-{self.worker_id}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming, stop running jobs at their next step and put them back in the queue."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._unsubscribe()
        self._register()
        deadline = time.monotonic() + (self.config.stop_grace_s + 5 if timeout is None else timeout)
        for run in list(self._runs.values()):
            run.join(max(0.0, deadline - time.monotonic()))
        try:
            self.services.store.forget_worker(self.worker_id)
        except Exception:
            log.exception("removing %s from the store's workers failed", self.worker_id)

    def _register(self) -> None:
        """Tell the store (and `ltxtune status`) who this worker is, what it runs and can run."""
        from ltxtune.jobs.store import WorkerRecord

        self.services.store.register_worker(
            WorkerRecord(self.worker_id, self.capacity.host, self.started_at, time.time(), self.slots,
                         {**self.capacity.advertised(), "step_seconds": dict(self.step_seconds)}, tuple(self.running), self.stopping)
        )  # fmt: skip

    def run_forever(self) -> None:
        """Run in the foreground until SIGINT/SIGTERM, then stop cleanly."""
        stop = threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            stop.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        self.start()
        while not stop.wait(0.5):
            pass
        log.info("stopping: running jobs stop at their next step and return to the queue")
        self.stop()

    @property
    def running(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    def _loop(self) -> None:
        """Look at the queue when woken (a store notification, a run ending) or every `poll_s`;
        between looks, report to the registry every heartbeat."""
        next_look = 0.0
        while not self._stopping.is_set():
            try:
                if self._wake.is_set() or time.monotonic() >= next_look:
                    self._wake.clear()
                    next_look = time.monotonic() + self.config.poll_s
                    self.tick()
                else:
                    self._register()
            except Exception:
                log.exception("worker loop failed; continuing")
            self._wake.wait(min(self.config.poll_s, self.config.heartbeat_s))

    def tick(self) -> None:
        store = self.services.store
        self._register()
        store.expire_unstarted()
        for job in store.reclaim_stale(self.config.stale_after_s, min(self.config.max_reclaims, self.config.infra_retries)):
            store.add_log(job.id, f"the run's worker stopped responding; job is now {job.status.value}", level="WARNING", source="ltxtune.worker")
        while not self._stopping.is_set():
            with self._lock:
                if not self._free_slots:
                    return
                slot = self._free_slots.pop(0)
            job = store.claim(self.worker_id, fits=self.capacity.fits)
            if job is None:
                with self._lock:
                    self._free_slots.insert(0, slot)
                return
            run = JobRun(self, job, slot)
            with self._lock:
                self._runs[job.id] = run
            run.start()

    def _finished(self, run: "JobRun") -> None:
        with self._lock:
            self._runs.pop(run.job.id, None)
            self.step_seconds.pop(run.job.id, None)
            self._free_slots.append(run.slot)
            self._free_slots.sort()
        self._wake.set()


class WorkSync(threading.Thread):
    """Copies a run's work dir to the shared storage while it runs (every `interval_s`, and once
    more at the end), so a host that dies leaves its last checkpoint where another can resume it."""

    def __init__(self, files: Any, job_id: str, interval_s: float):
        super().__init__(name=f"ltxtune-sync-{job_id[:8]}", daemon=True)
        self.files = files
        self.job_id = job_id
        self.interval_s = max(0.2, interval_s)
        self._ended = threading.Event()

    def run(self) -> None:
        if not self.files.work_is_shared:
            return
        while not self._ended.wait(self.interval_s):
            self._push()

    def _push(self) -> None:
        try:
            self.files.push_work(self.job_id)
        except Exception as error:  # the next round tries again; the run goes on
            log.warning("copying the work dir of job %s to the storage failed: %s", self.job_id, error)

    def stop(self) -> None:
        self._ended.set()
        if self.is_alive():
            self.join(60)
        if self.files.work_is_shared:
            self._push()


class JobRun(threading.Thread):
    """Supervises one run of one job in a child process."""

    def __init__(self, worker: Worker, job: Job, slot: int):
        super().__init__(name=f"ltxtune-job-{job.id[:8]}", daemon=True)
        self.worker = worker
        self.job = job
        self.slot = slot
        self.services = worker.services
        self.store = worker.services.store
        self.files = worker.services.files
        self.config = worker.config
        self.stop_reason: str | None = None  # "cancel" | "timeout" | "shutdown"
        self.where: str = "before training"  # the phase and step the run last reported

    def log(self, message: str, level: str = "INFO") -> None:
        self.store.add_log(self.job.id, message, level=level, source="ltxtune.worker")

    def run(self) -> None:
        try:
            self._run()
        except Exception as error:  # a bug here must still end the job, with its message
            log.exception("supervising job %s failed", self.job.id)
            if is_disk_full(error):
                self._end(JobStatus.FAILED, error=f"out of disk space at saving the outputs of {self.where}", kind=ErrorKind.INTERNAL)
            else:
                self._infrastructure_failure(f"the worker failed while running the job: {type(error).__name__}: {error}")
        finally:
            self.worker._finished(self)

    # -- the run ------------------------------------------------------------------------------

    def _child_env(self) -> dict[str, str]:
        env = {"LTXTUNE_SLOT": str(self.slot)}
        if self.config.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.config.gpus[self.slot % len(self.config.gpus)]
        return env

    def _run(self) -> None:
        job = self.job
        work_dir = self.files.work_dir(job.id)
        fetched = self.files.pull_work(job.id)  # a run that another host started
        if fetched:
            self.log(f"fetched {fetched} file(s) of the work dir from {self.files.objects.describe()}")
        resuming = work_dir.exists() and any(p.name != ".lock" for p in work_dir.iterdir())
        work_dir.mkdir(parents=True, exist_ok=True)
        plan_json, reads_uploads = resolve_uploads(self.services.plan_to_run(job).to_json(), job.owner, self.files)
        settings = RunSettings(
            cache_dir=self.config.data_dir / "cache",
            allow_local_files=reads_uploads,  # only the caller's own uploads (jobs/inputs.py)
            allow_private_urls=self.config.allow_private_urls,
            device=self.config.device,
            memory=self.config.memory,
            cpu_slots=self.config.workers,
        )
        ctx = multiprocessing.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        stop_event = ctx.Event()
        args = ChildArgs(
            runner=self.config.runner,
            plan_json=plan_json,
            work_dir=work_dir,
            settings=settings,
            parent_pid=os.getpid(),
            env=self._child_env(),
        )
        process = ctx.Process(target=child_main, args=(args, sender, stop_event), name=f"ltxtune-job-{job.id[:8]}")
        process.start()
        sender.close()
        self.log(
            f"run {job.attempts} started on {self.worker.worker_id} slot {self.slot} (pid {process.pid})"
            + ("; resuming from the work dir" if resuming else "")
        )

        sync = WorkSync(self.files, job.id, self.config.heartbeat_s)
        sync.start()
        try:
            outcome = self._supervise(process, receiver, stop_event)
        except BaseException:
            process.kill()  # never leave a child training for a run nobody supervises
            process.join(5)
            raise
        finally:
            sync.stop()
        if outcome == "lost":
            return
        process.join(self.config.stop_grace_s)
        if process.is_alive():
            process.kill()
            process.join(5)
        receiver.close()
        self._conclude(outcome, process.exitcode)

    def _supervise(self, process: Any, receiver: Any, stop_event: Any) -> ChildMessage | str | None:
        """Read the child's events until it ends; heartbeat, and stop it when asked. Returns its
        final message (None if it died without one), or "lost" if the lease was taken over."""
        job = self.job
        outcome: ChildMessage | None = None
        closed = False
        stop_sent_at: float | None = None
        next_beat = time.monotonic() + self.config.heartbeat_s
        next_check = 0.0
        while True:
            if not closed and receiver.poll(READ_INTERVAL_S):
                try:
                    message = receiver.recv()
                except (EOFError, OSError):
                    closed = True
                else:
                    if isinstance(message, EventMessage):
                        self._on_event(message.event)
                    else:
                        outcome = message
            elif closed:
                process.join(READ_INTERVAL_S)

            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + self.config.heartbeat_s
                if self.store.touch(job.id, self.worker.worker_id) is None:
                    self.log("this run lost its lease (the job was reclaimed); stopping it", level="WARNING")
                    process.kill()
                    process.join(5)
                    return "lost"
            if now >= next_check and self.stop_reason is None:
                next_check = now + CANCEL_CHECK_S
                self._check_stop(stop_event)
            if self.stop_reason is not None and stop_sent_at is None:
                stop_sent_at = now
            if stop_sent_at is not None and now - stop_sent_at > self.config.stop_grace_s and process.is_alive():
                self.log(f"the run did not stop within {self.config.stop_grace_s:.0f} s; killing it", level="WARNING")
                process.kill()
                stop_sent_at = float("inf")

            if outcome is not None or closed or not process.is_alive():
                while not closed and receiver.poll(0.05):  # drain what the child sent before it ended
                    try:
                        message = receiver.recv()
                    except (EOFError, OSError):
                        break
                    if isinstance(message, EventMessage):
                        self._on_event(message.event)
                    else:
                        outcome = message
                if outcome is not None or not process.is_alive():
                    break
        return outcome

    def _check_stop(self, stop_event: Any) -> None:
        current = self.store.get(self.job.id)
        if current is None:
            return
        if current.cancel_requested:
            self.stop_reason = "cancel"
            self.log("cancel requested: stopping at the next step")
        elif (deadline := current.deadline()) is not None and time.time() > deadline:
            self.stop_reason = "timeout"
            self.log(f"the step timeout ({current.timeout_s:.0f} s) passed: stopping", level="WARNING")
        elif self.worker.stopping:
            self.stop_reason = "shutdown"
            self.log("the worker is shutting down: stopping; the job returns to the queue")
        if self.stop_reason is not None:
            stop_event.set()

    # -- events -------------------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        job = self.job
        if isinstance(event, LogLine):
            self.store.add_log(job.id, event.message, level=event.level, source=event.source)
        elif isinstance(event, Progress):
            self.where = describe_progress(event, self.where)
            text = event.describe()
            self.store.add_log(job.id, text, source="ltxtune.train")
            if event.phase in ("train", "validate"):
                if event.phase == "train":
                    self.store.set_progress(job.id, self.worker.worker_id, event.fraction, text)
                    if event.seconds_per_step is not None:
                        self.worker.step_seconds[job.id] = event.seconds_per_step
                self.store.mark_running(job.id, self.worker.worker_id)
        elif isinstance(event, CheckpointSaved):
            self._save_checkpoint(event)

    def _save_checkpoint(self, event: CheckpointSaved) -> None:
        job = self.job
        if not job.plan.checkpoints.deliver_each:
            self.log(f"checkpoint saved at step {event.step}")
            return
        lora = self.files.save(job, f"epoch-{event.index}/lora", Path(event.lora_path))
        samples = [
            self.files.save(job, f"epoch-{event.index}/sample-{i}", Path(path)).id for i, path in enumerate(event.sample_paths)
        ]
        self.store.put_epoch(job.id, event.index, event.step, lora.id, samples)
        self.log(f"epoch {event.index} saved at step {event.step} ({len(samples)} preview(s))")

    # -- endings ------------------------------------------------------------------------------

    def _conclude(self, outcome: ChildMessage | None, exit_code: int | None) -> None:
        if isinstance(outcome, Done):
            self._succeed(outcome.outputs)
        elif isinstance(outcome, Failed) and not outcome.retryable:
            self._end(JobStatus.FAILED, error=outcome.message, kind=outcome.kind or ErrorKind.CONTENT)
        elif isinstance(outcome, StoppedMessage) or (outcome is None and self.stop_reason is not None):
            self._stopped()
        elif isinstance(outcome, Failed):
            self._infrastructure_failure(outcome.message)
        elif exit_code is not None and exit_code < 0:
            self._killed(describe_exit(exit_code))
        else:
            self._infrastructure_failure(describe_exit(exit_code))

    def _killed(self, message: str) -> None:
        """The child died by a signal (the OOM killer, a node hiccup): resume from the last
        checkpoint up to the server's `infra_retries` times (or the request's own retries if more),
        unless the previous run died at the same place (then it would only die again)."""
        if self.stop_reason in ("cancel", "timeout"):
            self._stopped()
            return
        current = self.store.get(self.job.id)
        if current is None or current.lease_owner != self.worker.worker_id:
            return
        message = f"{message} at {self.where}"
        previous = current.history[-1].reason if current.history else None
        allowed = max(current.max_retries, self.config.infra_retries)
        if previous == message:
            self._end(JobStatus.FAILED, error=f"{message}, again: the previous run failed at the same step, so it is not retried", kind=ErrorKind.INTERNAL)
        elif current.failures < allowed:
            self.log(f"{message}; resuming from the last checkpoint (retry {current.failures + 1} of {allowed})", level="WARNING")
            self.store.requeue(self.job.id, self.worker.worker_id, failure=message)
        else:
            self._end(JobStatus.FAILED, error=f"{message}; gave up after {current.failures + 1} runs", kind=ErrorKind.INTERNAL)

    def _stopped(self) -> None:
        if self.stop_reason == "cancel":
            self._end(JobStatus.CANCELED, error="Request was cancelled", kind=ErrorKind.CANCELLED)
        elif self.stop_reason == "timeout":
            self._end(JobStatus.EXPIRED, error=f"the job ran past its timeout of {self.job.timeout_s:.0f} s", kind=ErrorKind.TIMEOUT)
        elif self.stop_reason == "shutdown":
            if self.store.requeue(self.job.id, self.worker.worker_id, failure=None) is not None:
                self.log("returned to the queue; it resumes from its last checkpoint")
        else:
            self._infrastructure_failure("the trainer stopped without being asked to")

    def _infrastructure_failure(self, message: str) -> None:
        if self.stop_reason in ("cancel", "timeout"):
            self._stopped()
            return
        current = self.store.get(self.job.id)
        if current is None or current.lease_owner != self.worker.worker_id:
            return
        if current.failures < current.max_retries:
            self.log(f"{message}; retrying ({current.failures + 1} of {current.max_retries} retries)", level="WARNING")
            self.store.requeue(self.job.id, self.worker.worker_id, failure=message)
        else:
            self._end(JobStatus.FAILED, error=message, kind=ErrorKind.INTERNAL)

    def _end(self, status: JobStatus, *, error: str, kind: ErrorKind) -> None:
        job = self.job
        self.log(f"{status.value}: {error}", level="INFO" if status is JobStatus.CANCELED else "ERROR")
        ended = self.store.finish(
            job.id,
            self.worker.worker_id,
            status,
            error=error,
            error_kind=kind,
            billed=unbilled(job.plan.price).model_dump(mode="json"),
        )
        if ended is not None:
            self.files.discard_work(job.id)
            if status in (JobStatus.CANCELED, JobStatus.EXPIRED):
                self.files.discard_outputs(job.id)

    def _succeed(self, outputs: JobOutputs) -> None:
        job = self.job
        stored_epochs = {e.epoch for e in self.store.epochs(job.id)}
        for checkpoint in outputs.checkpoints:  # epochs saved by an earlier run of this job
            if checkpoint.index not in stored_epochs and job.plan.checkpoints.deliver_each and Path(checkpoint.lora_path).exists():
                self._save_checkpoint(checkpoint)
        saved = {
            "lora_file": self.files.save(job, "lora_file", Path(outputs.lora_path)).id,
            "config_file": self.files.save(job, "config_file", Path(outputs.config_path)).id,
        }
        if outputs.reel_path is not None:
            saved["video"] = self.files.save(job, "video", Path(outputs.reel_path)).id
        if outputs.debug_dataset_path is not None:
            saved["debug_dataset"] = self.files.save(job, "debug_dataset", Path(outputs.debug_dataset_path)).id
        ended = self.store.finish(
            job.id, self.worker.worker_id, JobStatus.SUCCEEDED, billed=job.plan.price.model_dump(mode="json"), outputs=saved
        )
        if ended is not None:
            self.log("succeeded")
            self.files.discard_work(job.id)
