"""Ticket API, one module per area. Mounted at /api (see jingwei.api): every path starts with
/tickets, /opportunities or /public. Thin: parse, call a service or a selector, serialise."""

from ninja import Router

from . import opportunities, public, routing, templates, tickets

router = Router()
# Literal paths (/tickets/templates, /tickets/routing…) before /tickets/{ticket_id}.
router.add_router("", templates.router)
router.add_router("", routing.router)
router.add_router("", tickets.router)
router.add_router("", opportunities.router)
router.add_router("", public.router)
