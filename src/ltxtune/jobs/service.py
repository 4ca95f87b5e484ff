"""The pieces one process needs to serve a data dir, opened together: the store (with the
notifier that turns status changes into webhooks and callbacks), output files and the webhook
signing key."""

from __future__ import annotations

from dataclasses import dataclass

from ltxtune.jobs import civitai_view, fal_view
from ltxtune.jobs.config import ServiceConfig
from ltxtune.jobs.storage import FileStore
from ltxtune.jobs.store import JobSnapshot, Notification, Store
from ltxtune.jobs.webhooks import Dispatcher, Signer


@dataclass
class Services:
    config: ServiceConfig
    store: Store
    files: FileStore
    signer: Signer

    @classmethod
    def open(cls, config: ServiceConfig) -> "Services":
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(config.db_path)
        files = FileStore(config.data_dir, store, config.url_ttl_s)
        signer = Signer(config.data_dir / "secrets" / "webhook-ed25519.pem")
        services = cls(config=config, store=store, files=files, signer=signer)
        store.set_notifier(services.notifications)
        return services

    def notifications(self, before: JobSnapshot | None, after: JobSnapshot) -> list[Notification]:
        if after.job.flavour == "fal":
            return fal_view.webhook(before, after, self.files)
        return civitai_view.callbacks(before, after, self.files)

    def dispatcher(self) -> Dispatcher:
        c = self.config
        return Dispatcher(
            self.store,
            self.signer,
            attempts=c.webhook_attempts,
            base_delay_s=c.webhook_base_delay_s,
            max_delay_s=c.webhook_max_delay_s,
            timeout_s=c.webhook_timeout_s,
            allow_private_urls=c.allow_private_urls,
        )

    def close(self) -> None:
        self.store.close()
