"""The spare-parts library: parts, warehouses with their bin locations, stock per location, the
append-only movement log, reservations for tickets and low-stock thresholds.

Quantities are Decimal(12, 3): most parts are counted in pieces, but refrigerant is bought by the
kilogram and copper pipe by the metre, and a float would drift when thousands of movements are
summed. Every balance is a cache of the movement log: the services write a movement and its
balance change in one transaction, under a row lock on the balance, and a test replays the log.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import models
from django.db.models import F, Q

from jingwei.core.errors import Conflict
from jingwei.core.models import TenantModel, TenantQuerySet
from jingwei.org.scope import ScopeFields

ZERO = Decimal("0")


class Part(TenantModel):
    code = models.CharField("备件编码", max_length=40)
    name = models.CharField("名称", max_length=100)
    model = models.CharField("型号", max_length=100, blank=True, default="")
    specification = models.CharField("规格", max_length=200, blank=True, default="")
    unit = models.CharField("单位", max_length=10, default="件")
    cost = models.DecimalField("成本价", max_digits=12, decimal_places=2, default=Decimal("0.00"))
    currency = models.CharField("币种", max_length=3, default="CNY")
    # Equipment models this part fits (e.g. ["KFR-35GW", "LD-1200"]): a list of model names,
    # since the equipment catalogue (products) is not a table yet.
    compatible_models = models.JSONField("适用设备型号", default=list, blank=True)
    # Days from ordering to the part on the shelf: reorder suggestions cover them.
    lead_time_days = models.PositiveIntegerField("采购周期（天）", default=7)
    is_active = models.BooleanField("启用", default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "备件"
        verbose_name_plural = "备件"
        ordering = ["code", "id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "code"], name="catalog_part_code")]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class WarehouseKind(models.TextChoices):
    CENTRAL = "central", "中心仓"
    REGIONAL = "regional", "区域仓"
    VAN = "van", "工程师车载仓"


class Warehouse(TenantModel):
    kind = models.CharField("类型", max_length=10, choices=WarehouseKind.choices)
    name = models.CharField("名称", max_length=100)
    region = models.ForeignKey(
        "org.Region", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The engineer whose van this is (vans only).
    owner = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    is_active = models.BooleanField("启用", default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # A regional grant of catalog.manage reaches the region's warehouses; an engineer sees his van.
    scope_fields = ScopeFields(owner="owner", region="region")

    class Meta:
        verbose_name = "仓库"
        verbose_name_plural = "仓库"
        ordering = ["kind", "name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="catalog_warehouse_name"),
            models.UniqueConstraint(
                fields=["tenant", "owner"],
                condition=Q(kind="van") & Q(owner__isnull=False),
                name="catalog_one_van_per_engineer",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Location(TenantModel):
    """A bin (库位) in a warehouse; stock is kept per part and location."""

    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="locations")
    code = models.CharField("库位编码", max_length=40)
    name = models.CharField("名称", max_length=100, blank=True, default="")
    is_active = models.BooleanField("启用", default=True)

    scope_fields = ScopeFields(owner="warehouse__owner", region="warehouse__region")

    class Meta:
        verbose_name = "库位"
        verbose_name_plural = "库位"
        ordering = ["warehouse", "code", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "warehouse", "code"], name="catalog_location_code"
            )
        ]

    def __str__(self) -> str:
        return f"{self.warehouse.name}/{self.code}"


class StockBalance(TenantModel):
    """What a location holds of a part: a cache of the movement log (never written elsewhere)."""

    part = models.ForeignKey(Part, on_delete=models.PROTECT, related_name="+")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="balances")
    on_hand = models.DecimalField("在库", default=ZERO, max_digits=12, decimal_places=3)
    reserved = models.DecimalField("已预留", default=ZERO, max_digits=12, decimal_places=3)
    updated_at = models.DateTimeField(auto_now=True)

    scope_fields = ScopeFields(
        owner="location__warehouse__owner", region="location__warehouse__region"
    )

    class Meta:
        verbose_name = "库存"
        verbose_name_plural = "库存"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "part", "location"], name="catalog_balance_part_location"
            ),
            # The last line of defence: whatever a service gets wrong, stock never goes negative.
            models.CheckConstraint(condition=Q(on_hand__gte=0), name="catalog_on_hand_gte_0"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="catalog_reserved_gte_0"),
            models.CheckConstraint(
                condition=Q(reserved__lte=F("on_hand")), name="catalog_reserved_lte_on_hand"
            ),
        ]

    @property
    def available(self) -> Decimal:
        return self.on_hand - self.reserved


class StockThreshold(TenantModel):
    """Low-stock line for a part at a location: when the available quantity drops below
    `minimum`, an event `catalog.stock_low` is published; `safety_stock` is kept on top of the
    lead-time demand when a reorder is suggested."""

    part = models.ForeignKey(Part, on_delete=models.CASCADE, related_name="+")
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="+")
    minimum = models.DecimalField("最低库存", max_digits=12, decimal_places=3)
    safety_stock = models.DecimalField("安全库存", default=ZERO, max_digits=12, decimal_places=3)

    class Meta:
        verbose_name = "库存预警线"
        verbose_name_plural = "库存预警线"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "part", "location"], name="catalog_threshold_part_location"
            )
        ]


class ReservationStatus(models.TextChoices):
    RESERVED = "reserved", "已预留"
    CONSUMED = "consumed", "已领用"
    RELEASED = "released", "已释放"


class Reservation(TenantModel):
    """Stock held for a job (a ticket's flow case): consumed when the work is done, released
    when the parts were not needed. `consumed` + `released` never exceed `quantity`; the
    reservation is closed when they reach it."""

    part = models.ForeignKey(Part, on_delete=models.PROTECT, related_name="+")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="+")
    quantity = models.DecimalField("预留数量", max_digits=12, decimal_places=3)
    consumed = models.DecimalField("已领用", default=ZERO, max_digits=12, decimal_places=3)
    released = models.DecimalField("已释放", default=ZERO, max_digits=12, decimal_places=3)
    status = models.CharField(
        max_length=10, choices=ReservationStatus.choices, default=ReservationStatus.RESERVED
    )
    # What it is held for: ("flow_instance", instance id) for a ticket's case; `ref_label` is
    # what people recognise (the ticket number).
    ref_type = models.CharField(max_length=30, blank=True, default="")
    ref_id = models.CharField(max_length=60, blank=True, default="")
    ref_label = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    scope_fields = ScopeFields(
        owner="location__warehouse__owner", region="location__warehouse__region"
    )

    class Meta:
        verbose_name = "备件预留"
        verbose_name_plural = "备件预留"
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["tenant", "ref_type", "ref_id"], name="catalog_res_ref")]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="catalog_res_qty_gt_0"),
            models.CheckConstraint(
                condition=Q(consumed__gte=0)
                & Q(released__gte=0)
                & Q(quantity__gte=F("consumed") + F("released")),
                name="catalog_res_within_qty",
            ),
        ]

    @property
    def open_quantity(self) -> Decimal:
        return self.quantity - self.consumed - self.released


class MovementKind(models.TextChoices):
    RECEIVE = "receive", "入库"
    TRANSFER_OUT = "transfer_out", "调拨出库"
    TRANSFER_IN = "transfer_in", "调拨入库"
    RESERVE = "reserve", "预留"
    RELEASE = "release", "释放预留"
    ISSUE = "issue", "领用出库"
    RETURN = "return", "退回入库"
    ADJUST = "adjust", "库存调整"
    COUNT = "count", "盘点"


class AppendOnly(Conflict):
    default_code = "append_only"


class MovementQuerySet(TenantQuerySet):
    """The log is append-only: bulk updates and deletes are refused, like row saves."""

    def update(self, **kwargs: Any) -> int:
        raise AppendOnly("库存流水只能追加，不能修改")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnly("库存流水只能追加，不能删除")


class Movement(TenantModel):
    """One line of the append-only stock log. `delta_on_hand` and `delta_reserved` are what it
    did to the balance of (part, location); the balance is their sum over the log.

    `quantity` is the amount the operation was about (for a stock-take: the counted quantity).
    An operation that writes several lines (a transfer) numbers them with `seq` under one
    `idempotency_key`, so a retried call finds its earlier lines instead of moving stock again."""

    kind = models.CharField(max_length=12, choices=MovementKind.choices)
    part = models.ForeignKey(Part, on_delete=models.PROTECT, related_name="+")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="+")
    quantity = models.DecimalField(max_digits=12, decimal_places=3)
    delta_on_hand = models.DecimalField(default=ZERO, max_digits=12, decimal_places=3)
    delta_reserved = models.DecimalField(default=ZERO, max_digits=12, decimal_places=3)
    ref_type = models.CharField(max_length=30, blank=True, default="")
    ref_id = models.CharField(max_length=60, blank=True, default="")
    reservation = models.ForeignKey(
        Reservation, null=True, blank=True, on_delete=models.PROTECT, related_name="movements"
    )
    actor = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    at = models.DateTimeField()
    note = models.CharField(max_length=200, blank=True, default="")
    idempotency_key = models.CharField(max_length=200, blank=True, default="")
    seq = models.PositiveSmallIntegerField(default=0)

    objects = MovementQuerySet.as_manager()  # type: ignore[misc]
    scope_fields = ScopeFields(region="location__warehouse__region")

    class Meta:
        verbose_name = "库存流水"
        verbose_name_plural = "库存流水"
        ordering = ["at", "id"]
        indexes = [
            models.Index(fields=["tenant", "part", "location", "at"], name="catalog_move_part"),
            models.Index(fields=["tenant", "kind", "at"], name="catalog_move_kind"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key", "seq"],
                condition=~Q(idempotency_key=""),
                name="catalog_move_idempotency",
            )
        ]

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnly("库存流水只能追加，不能修改")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnly("库存流水只能追加，不能删除")
