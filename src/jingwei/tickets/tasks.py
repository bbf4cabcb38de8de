"""Background jobs of the tickets app (django-tasks; the job row is written in the caller's
transaction, so a rolled-back ticket sends nothing). Thin: call a service."""

from __future__ import annotations

from django_tasks import task

from .services.intake import acknowledgement_send


@task()
def send_acknowledgement(
    *,
    ticket_id: int,
    mailbox_address: str,
    to_address: str,
    subject: str,
    message_id: str,
    references: list[str],
) -> str:
    """Reply to the mail that opened ticket `ticket_id` with its number and progress link."""
    return acknowledgement_send(
        ticket_id=ticket_id,
        mailbox_address=mailbox_address,
        to_address=to_address,
        subject=subject,
        message_id=message_id,
        references=references,
    )
