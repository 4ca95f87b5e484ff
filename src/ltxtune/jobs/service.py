"""The pieces one process needs to serve a data dir, opened together: the store (with the
notifier that turns status changes into webhooks and callbacks), output files and the webhook
signing key. What a change notifies, and with which signature headers, is the protocols' to say:
the caller passes them in (`ltxtune.protocols.registry.open_services`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ltxtune.jobs.config import ServiceConfig
from ltxtune.jobs.objects import open_objects
from ltxtune.jobs.storage import FileStore
from ltxtune.jobs.store import Job, JobSnapshot, Notification, Store, open_store
from ltxtune.jobs.webhooks import Dispatcher, Signer
from ltxtune.specs.plan import TrainingPlan

# (before, after, files) -> what the change sends
FileNotifier = Callable[[JobSnapshot | None, JobSnapshot, FileStore], list[Notification]]
# a stored job -> the plan its run trains (a protocol may complete plans stored by older versions)
PlanReader = Callable[[Job], TrainingPlan]


def _silent(before: JobSnapshot | None, after: JobSnapshot, files: FileStore) -> list[Notification]:
    return []


def _as_stored(job: Job) -> TrainingPlan:
    return job.plan


@dataclass
class Services:
    config: ServiceConfig
    store: Store
    files: FileStore
    signer: Signer
    notifier: FileNotifier = _silent
    header_prefixes: dict[str, str] = field(default_factory=dict)  # notification kind -> signature header prefix
    plan_to_run: PlanReader = _as_stored
    listeners: list[Callable[[str], None]] = field(default_factory=list)  # told the id of every job whose status changed

    @classmethod
    def open(
        cls,
        config: ServiceConfig,
        *,
        notifier: FileNotifier = _silent,
        header_prefixes: dict[str, str] | None = None,
        plan_to_run: PlanReader = _as_stored,
    ) -> "Services":
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(config.store_target)
        files = FileStore(config.data_dir, store, config.url_ttl_s, open_objects(config.storage, config.data_dir))
        signer = Signer(config.data_dir / "secrets" / "webhook-ed25519.pem")
        services = cls(
            config=config,
            store=store,
            files=files,
            signer=signer,
            notifier=notifier,
            header_prefixes=dict(header_prefixes or {}),
            plan_to_run=plan_to_run,
        )
        store.set_notifier(services.notifications)
        return services

    def notifications(self, before: JobSnapshot | None, after: JobSnapshot) -> list[Notification]:
        for listener in self.listeners:  # quick and non-blocking: this runs inside the store's transaction
            listener(after.job.id)
        return self.notifier(before, after, self.files)

    def dispatcher(self) -> Dispatcher:
        c = self.config
        return Dispatcher(
            self.store,
            self.signer,
            header_prefixes=self.header_prefixes,
            attempts=c.webhook_attempts,
            base_delay_s=c.webhook_base_delay_s,
            max_delay_s=c.webhook_max_delay_s,
            timeout_s=c.webhook_timeout_s,
            allow_private_urls=c.allow_private_urls,
        )

    def close(self) -> None:
        self.store.close()
