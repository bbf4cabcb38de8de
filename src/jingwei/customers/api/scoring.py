"""Scoring API: score signals (conditions worth points), the batch that writes every customer's
score, and one customer's score with its breakdown. Thin: parse, call a scoring service,
serialise."""

from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from ninja import Field, Router, Schema, Status
from ninja.pagination import paginate

from jingwei.core.api import AuthedRequest, In, Page
from jingwei.org.api import patch_changes

from ..models import ScoreSignal
from ..services import scoring

router = Router(tags=["客户评分"])

CONDITIONS_HELP = (
    "满足这些条件的客户得到本项分值（与分群相同的条件语言），"
    '例如 {"event": "order", "within_days": 90, "op": "gte", "value": 3}'
)
Points = Field(
    ...,
    ge=-scoring.POINTS_MAX,
    le=scoring.POINTS_MAX,
    description="分值，可为负（如「30 天未跟进」-10）",
)
Sort = Field(0, ge=-(2**31), le=2**31 - 1)


class ScoreSignalOut(Schema):
    id: int
    name: str
    conditions: dict[str, Any]
    points: int
    enabled: bool
    sort: int
    created_at: datetime
    updated_at: datetime


class ScoreSignalIn(In):
    name: str = Field(..., min_length=1, max_length=100)
    conditions: dict[str, Any] = Field(..., description=CONDITIONS_HELP)
    points: int = Points
    enabled: bool = True
    sort: int = Sort


class ScoreSignalPatch(In):
    name: str | None = Field(None, min_length=1, max_length=100)
    conditions: dict[str, Any] | None = Field(None, description=CONDITIONS_HELP)
    points: int | None = Field(None, ge=-scoring.POINTS_MAX, le=scoring.POINTS_MAX)
    enabled: bool | None = None
    sort: int | None = Field(None, ge=-(2**31), le=2**31 - 1)


class RecomputeOut(Schema):
    scored: int = Field(..., description="本次计算了评分的客户数")


class SignalMatchOut(Schema):
    signal_id: int
    name: str
    points: int
    matched: bool
    conditions_text: str = Field(..., description="条件的文字说明")
    problem: str = Field(..., description="条件失效时的说明（此项不计分），否则为空")


class ScoreOut(Schema):
    customer_id: int
    total: int = Field(..., description="按当前启用的评分项实时计算的总分")
    stored_score: int = Field(..., description="上次批量计算写入客户档案的评分（列表、筛选用）")
    scored_at: datetime | None = Field(..., description="上次批量计算的时间")
    signals: list[SignalMatchOut] = Field(..., description="每个启用的评分项及是否满足")


# Literal paths before "/customers/score-signals/{signal_id}" and profiles' "/customers/{id}".


@router.get("/customers/score-signals", response=list[ScoreSignalOut], summary="评分项")
@paginate(Page)
def list_signals(request: AuthedRequest) -> QuerySet[ScoreSignal]:
    return scoring.score_signal_list(actor=request.actor)


@router.post(
    "/customers/score-signals",
    response={201: ScoreSignalOut},
    summary="新建评分项（需全公司范围的 customer.manage；客户档案上的评分在重新计算后更新）",
)
def create_signal(request: AuthedRequest, payload: ScoreSignalIn) -> Status[ScoreSignal]:
    data = payload.model_dump()
    signal = scoring.score_signal_create(
        actor=request.actor, conditions_data=data.pop("conditions"), **data
    )
    return Status(201, signal)


@router.post(
    "/customers/score-signals/recompute",
    response=RecomputeOut,
    summary="重新计算全部客户的评分（需全公司范围的 customer.manage）",
)
def recompute_scores(request: AuthedRequest) -> dict[str, int]:
    return {"scored": scoring.scores_recompute_requested(actor=request.actor)}


@router.patch("/customers/score-signals/{signal_id}", response=ScoreSignalOut, summary="修改评分项")
def update_signal(request: AuthedRequest, signal_id: int, payload: ScoreSignalPatch) -> Any:
    changes = patch_changes(payload, not_null=("name", "conditions", "points", "enabled", "sort"))
    return scoring.score_signal_update(actor=request.actor, signal_id=signal_id, changes=changes)


@router.delete("/customers/score-signals/{signal_id}", response={204: None}, summary="删除评分项")
def delete_signal(request: AuthedRequest, signal_id: int) -> Status[None]:
    scoring.score_signal_delete(actor=request.actor, signal_id=signal_id)
    return Status(204, None)


@router.get(
    "/customers/{customer_id}/score",
    response=ScoreOut,
    summary="客户评分明细：每个启用的评分项是否满足（实时）",
)
def get_score(request: AuthedRequest, customer_id: int) -> dict[str, Any]:
    result = scoring.customer_score(actor=request.actor, customer_id=customer_id)
    return {
        "customer_id": result.customer.pk,
        "total": result.total,
        "stored_score": result.stored_score,
        "scored_at": result.scored_at,
        "signals": [
            {
                "signal_id": item.signal.pk,
                "name": item.signal.name,
                "points": item.signal.points,
                "matched": item.matched,
                "conditions_text": item.description,
                "problem": item.problem,
            }
            for item in result.items
        ],
    }
