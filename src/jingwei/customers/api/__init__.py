"""Customer API, one module per area; every path starts with /customers (the router is mounted
at the API root, see jingwei.api). Thin: parse, call a service or a selector, serialise."""

from ninja import Router

from . import events, imports, ownership, profiles, scoring, segments, tags

router = Router()
# Before profiles: its "/customers/{customer_id}" would take "/customers/imports" for an id.
router.add_router("", imports.router)
router.add_router("", ownership.router)
router.add_router("", tags.router)
router.add_router("", events.router)
router.add_router("", segments.router)
router.add_router("", scoring.router)
router.add_router("", profiles.router)
