"""Ticket operations. Each top-level service is one transaction, checks the actor's permission
and data scope itself, and records an audit event. Entry points without a person (public form,
mail, WeCom) are in `intake`."""

from .attachments import attachment_get, attachment_upload
from .bulk import tickets_bulk_assign, tickets_bulk_close, tickets_export_csv
from .intake import (
    PublicSubmission,
    WecomMessage,
    mail_receive,
    mailbox_accepts,
    mailbox_save,
    public_form_submit,
    public_template,
    wecom_message_receive,
)
from .opportunities import (
    opportunities_visible,
    opportunity_create,
    opportunity_get,
    opportunity_update,
)
from .progress import progress_url, progress_view, qr_png, qr_svg
from .routing import queue_save, queues_visible, route, rule_delete, rule_save, rules_visible
from .templates import (
    override_create,
    template_create,
    template_for,
    template_get,
    template_list,
    template_publish_form,
    template_revert,
    template_update,
)
from .tickets import (
    Created,
    NewTicket,
    comment_add,
    next_number,
    ticket_assign,
    ticket_close,
    ticket_create,
    ticket_opportunity_create,
    ticket_update,
    watcher_set,
)

__all__ = [
    "Created",
    "NewTicket",
    "PublicSubmission",
    "WecomMessage",
    "attachment_get",
    "attachment_upload",
    "comment_add",
    "mail_receive",
    "mailbox_accepts",
    "mailbox_save",
    "next_number",
    "opportunities_visible",
    "opportunity_create",
    "opportunity_get",
    "opportunity_update",
    "override_create",
    "progress_url",
    "progress_view",
    "public_form_submit",
    "public_template",
    "qr_png",
    "qr_svg",
    "queue_save",
    "queues_visible",
    "route",
    "rule_delete",
    "rule_save",
    "rules_visible",
    "template_create",
    "template_for",
    "template_get",
    "template_list",
    "template_publish_form",
    "template_revert",
    "template_update",
    "ticket_assign",
    "ticket_close",
    "ticket_create",
    "ticket_opportunity_create",
    "ticket_update",
    "tickets_bulk_assign",
    "tickets_bulk_close",
    "tickets_export_csv",
    "watcher_set",
    "wecom_message_receive",
]
