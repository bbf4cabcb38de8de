"""Org operations: trees, employees, roles and grants. Each top-level service is one transaction,
checks the actor's permission itself, and records an audit event."""

from .common import (
    GRANT_EXPIRY_TIMER,
    MANAGE,
    check_refs,
    employees_holding,
    permission_catalogue_sync,
    role_holders_covering,
)
from .employees import (
    employee_create,
    employee_get,
    employee_leave,
    employee_unfreeze,
    employee_update,
    employees_export_csv,
)
from .roles import (
    assignment_create,
    assignment_revoke,
    grant_expired,
    role_create,
    role_delete,
    role_update,
)
from .trees import tree_node_create, tree_node_delete, tree_node_update

__all__ = [
    "GRANT_EXPIRY_TIMER",
    "MANAGE",
    "assignment_create",
    "assignment_revoke",
    "check_refs",
    "employee_create",
    "employee_get",
    "employee_leave",
    "employee_unfreeze",
    "employee_update",
    "employees_export_csv",
    "employees_holding",
    "grant_expired",
    "permission_catalogue_sync",
    "role_create",
    "role_delete",
    "role_holders_covering",
    "role_update",
    "tree_node_create",
    "tree_node_delete",
    "tree_node_update",
]
