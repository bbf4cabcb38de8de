"""Customer operations. Each top-level service is one transaction, checks the actor's permission
and data scope itself (customer.edit), and records an audit event."""

from .common import EDIT, FILLABLE, PROFILE_FIELDS, VIEW, company_key, survivor_id
from .customers import customer_update, identity_add, identity_remove
from .merging import (
    MOVABLES,
    Movable,
    candidate_accept,
    candidate_reject,
    customer_merge,
    merge_in_transaction,
    merge_undo,
    register_movable,
)
from .resolution import (
    Resolution,
    customer_resolve,
    propose_lookalikes,
    resolve_in_transaction,
)

__all__ = [
    "EDIT",
    "FILLABLE",
    "MOVABLES",
    "PROFILE_FIELDS",
    "VIEW",
    "Movable",
    "Resolution",
    "candidate_accept",
    "candidate_reject",
    "company_key",
    "customer_merge",
    "customer_resolve",
    "customer_update",
    "identity_add",
    "identity_remove",
    "merge_in_transaction",
    "merge_undo",
    "propose_lookalikes",
    "register_movable",
    "resolve_in_transaction",
    "survivor_id",
]
