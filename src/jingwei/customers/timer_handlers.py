from datetime import datetime, time

from jingwei.core.models import Timer
from jingwei.core.timers import daily_timer, timer_handler

from .services.follow_ups import follow_up_remind
from .services.ownership import REMINDER_TIMER


@timer_handler(REMINDER_TIMER)
def on_follow_up_due(timer: Timer) -> None:
    follow_up_remind(
        tenant_id=timer.tenant_id,
        customer_id=int(timer.payload["customer_id"]),
        due_at=datetime.fromisoformat(timer.payload["due_at"]),
    )


@daily_timer("customers.daily", time(2, 0))
def on_night(timer: Timer) -> None:
    # The work runs as a job: it takes minutes on a large tenant and commits step by step, which
    # a timer's single transaction must not.
    from .tasks import daily

    daily.enqueue(timer.tenant_id)
