from jingwei.core.models import Timer
from jingwei.core.timers import timer_handler

from .services import GRANT_EXPIRY_TIMER, grant_expired


@timer_handler(GRANT_EXPIRY_TIMER)
def on_grant_expired(timer: Timer) -> None:
    grant_expired(tenant_id=timer.tenant_id, assignment_id=int(timer.payload["assignment_id"]))
