from jingwei.core.models import Timer
from jingwei.core.timers import timer_handler

from . import engine, sla


@timer_handler(engine.TIMER_KIND)
def on_flow_timer(timer: Timer) -> None:
    engine.fire_timer(timer.payload)


@timer_handler(sla.SLA_TIMER)
def on_sla_step(timer: Timer) -> None:
    with engine.recording():
        sla.fire(timer.payload)
