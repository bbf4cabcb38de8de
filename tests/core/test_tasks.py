"""Background jobs (django-tasks, database backend) are rows written in the caller's transaction:
the real worker process runs the committed ones and never sees one whose transaction rolled back."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from django.db import connection, transaction
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from jingwei.audit.models import AuditEvent
from jingwei.org.models import Tenant

from ..factories import TenantFactory
from .processes import run_worker_batch
from .sample_tasks import RAN_ACTION, leave_mark


class _Rollback(Exception):
    pass


def _marks() -> set[str]:
    return set(AuditEvent.objects.filter(action=RAN_ACTION).values_list("subject_id", flat=True))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_job_enqueued_in_rolled_back_transaction_never_runs_but_committed_job_does(
    tmp_path: Path,
) -> None:
    # Given a job enqueued in a transaction that rolls back, and one in a transaction that commits
    tenant = cast(Tenant, TenantFactory())
    with pytest.raises(_Rollback), transaction.atomic():
        leave_mark.enqueue(tenant.pk, "rolled-back")
        raise _Rollback
    with transaction.atomic():
        committed = leave_mark.enqueue(tenant.pk, "committed")

    # When the real worker runs everything queued, then exits
    code, output = run_worker_batch(tmp_path / "worker.log")

    # Then the committed job ran and succeeded, and the rolled-back one never existed
    assert code == 0, output
    assert _marks() == {"committed"}, output
    row = DBTaskResult.objects.get(id=committed.id)
    assert row.status == TaskResultStatus.SUCCESSFUL
    assert row.return_value == "committed"
    assert DBTaskResult.objects.count() == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_does_not_see_a_job_until_its_transaction_commits(
    tmp_path: Path,
) -> None:
    if connection.vendor == "sqlite":
        pytest.skip("SQLite: the open write transaction would block the worker, not hide the job")
    tenant = cast(Tenant, TenantFactory())
    with transaction.atomic():
        # Given a job enqueued in a transaction that is still open
        pending = leave_mark.enqueue(tenant.pk, "pending")
        # When the worker runs everything it can see
        code, output = run_worker_batch(tmp_path / "worker-before.log")
        # Then it found nothing to run
        assert code == 0, output
    assert _marks() == set()
    assert DBTaskResult.objects.get(id=pending.id).status == TaskResultStatus.READY

    # And once the transaction has committed, the next worker runs the job
    code, output = run_worker_batch(tmp_path / "worker-after.log")
    assert code == 0, output
    assert _marks() == {"pending"}
    assert DBTaskResult.objects.get(id=pending.id).status == TaskResultStatus.SUCCESSFUL
