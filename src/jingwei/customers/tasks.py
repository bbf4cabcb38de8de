"""Background jobs of the customers app (django-tasks; in production the database backend, so a
job enqueued inside a transaction is a row of that transaction). Thin: load by id, call a
service."""

from __future__ import annotations

from django_tasks import task

from .services.housekeeping import customers_daily
from .services.importing import import_job_run


@task()
def import_run(job_id: int) -> dict[str, object] | None:
    """Run customer import `job_id` (validate, then write all-or-nothing). A job that is no longer
    pending (run already, or taken by another worker) is left alone and gives None."""
    job = import_job_run(job_id=job_id)
    if job is None:
        return None
    return {
        "status": job.status,
        "created": job.created_count,
        "updated": job.updated_count,
        "skipped": job.skipped_count,
    }


@task()
def daily(tenant_id: int) -> dict[str, object]:
    """The nightly run for one tenant (queued by the `customers.daily` timer at 02:00)."""
    return customers_daily(tenant_id=tenant_id)
