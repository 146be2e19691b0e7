"""The REST API's request and response bodies (pydantic). They are the contract: the server
validates with them and ``webapp.openapi`` publishes their JSON schemas, so the document and
the behaviour cannot drift apart.

Strict: unknown fields, wrong JSON types ("100" for a number), NaN/Infinity, amounts over
¥1 trillion, naive or out-of-range datetimes are all a 422 naming the field.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    model_validator,
)

from sales import credit_code

STAGES = ("lead", "qualified", "proposal", "negotiation", "won", "lost")
MAX_AMOUNT = 1e12
KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"


def _clean(v: str) -> str:
    v = v.strip()
    if not v:
        raise ValueError("must not be blank")
    if "\x00" in v:
        raise ValueError("must not contain NUL characters")
    return v


def _credit_code(v: str) -> str:
    code = credit_code.clean(v)
    if code and (why := credit_code.problem(code)):
        raise ValueError(why)
    return code


def _utc(v: datetime) -> datetime:
    try:
        return v.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("datetime out of range") from None


Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_clean)]
Key = Annotated[str, Field(pattern=KEY_PATTERN, description="an external key: letters, "
                           "digits and . _ : - (at most 64)")]
Amount = Annotated[float, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]
PositiveAmount = Annotated[float, Field(gt=0, le=MAX_AMOUNT, allow_inf_nan=False)]
UTCTime = Annotated[AwareDatetime, AfterValidator(_utc)]
Stage = Literal["lead", "qualified", "proposal", "negotiation", "won", "lost"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DealIn(Strict):
    """PUT /api/v1/deals/{external_id}: create or replace the deal with that ERP key."""

    customer: Name = Field(description="the customer's external id, or its exact name")
    title: Name
    stage: Stage
    amount: Amount = 0
    owner: Name | None = Field(default=None, description="the owner's user name; default: "
                               "the customer's owner (on create) or unchanged (on update)")


class DealOut(BaseModel):
    external_id: str
    customer: str
    customer_external_id: str | None
    title: str
    stage: str
    amount: float
    owner: str | None
    last_activity_at: datetime
    created_at: datetime


class CustomerIn(Strict):
    """PUT /api/v1/customers/{external_id}: create or update the customer with that ERP key.
    A position is lat + lng + coord_system together (GCJ-02 is what Amap and Tencent maps
    give; WGS-84 what GPS gives): the system decides how the check-in distance is taken."""

    name: Name
    short_name: Annotated[str, Field(max_length=200)] = ""
    region: Annotated[str, Field(max_length=200)] = ""
    owner: Name | None = Field(default=None, description="the owner's user name; default: "
                               "none (on create) or unchanged (on update)")
    lat: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)] | None = None
    lng: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)] | None = None
    coord_system: Literal["wgs84", "gcj02"] | None = Field(
        default=None, description="required with lat/lng: wgs84 (GPS) or gcj02 (Amap, "
        "Tencent maps)")
    address: Annotated[str, Field(max_length=200)] = ""
    credit_code: Annotated[str, Field(max_length=40), AfterValidator(_credit_code)] = Field(
        default="", description="统一社会信用代码 (18 characters, check character verified)")

    @model_validator(mode="after")
    def _position_whole(self) -> CustomerIn:
        given = [v is not None for v in (self.lat, self.lng, self.coord_system)]
        if any(given) and not all(given):
            raise ValueError("a position needs lat, lng and coord_system together")
        return self


class CustomerOut(BaseModel):
    external_id: str
    name: str
    short_name: str
    region: str
    owner: str | None
    lat: float | None
    lng: float | None
    coord_system: str | None
    address: str
    credit_code: str
    created_at: datetime


class InvoiceIn(Strict):
    """PUT /api/v1/invoices/{number}: create or replace the invoice with that number."""

    customer: Name = Field(description="the customer's external id, or its exact name")
    amount: PositiveAmount
    paid_amount: Amount | None = Field(default=None, description="default: 0 on create, "
                                       "unchanged on update; at most amount")
    due_date: date
    deal: Name | None = Field(default=None, description="the deal's external id, or its "
                              "title among this customer's deals")

    @model_validator(mode="after")
    def _paid_le_amount(self) -> InvoiceIn:
        if self.paid_amount is not None and self.paid_amount > self.amount:
            raise ValueError("paid_amount exceeds amount")
        return self


class InvoiceOut(BaseModel):
    number: str
    customer: str
    customer_external_id: str | None
    amount: float
    paid_amount: float
    outstanding: float
    due_date: date
    deal: str | None
    deal_external_id: str | None
    paid_at: datetime | None


class PaymentIn(Strict):
    """POST /api/v1/payments: money received against an invoice."""

    invoice: Key = Field(description="the invoice number")
    amount: PositiveAmount
    paid_at: UTCTime
    reference: Key | None = Field(default=None, description="the sender's payment id: "
                                  "posting the same reference again does not pay twice")


class PaymentOut(BaseModel):
    id: int
    reference: str | None
    amount: float
    paid_at: datetime
    replayed: bool = Field(description="true when this reference was already recorded")
    invoice: InvoiceOut


class VisitOut(BaseModel):
    id: int
    user: str | None
    customer: str | None
    customer_external_id: str | None
    deal: str | None
    deal_external_id: str | None
    source: str
    summary: str
    follow_up_on: date | None
    created_at: datetime


class VisitPage(BaseModel):
    items: list[VisitOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null at "
                                    "the end")


class ErrorDetail(BaseModel):
    field: str
    message: str


class Error(BaseModel):
    error: str
    details: list[ErrorDetail] = []


MODELS: tuple[type[BaseModel], ...] = (CustomerIn, CustomerOut, DealIn, DealOut, InvoiceIn,
                                        InvoiceOut, PaymentIn,
                                        PaymentOut, VisitOut, VisitPage, Error, ErrorDetail)

KEY_ADAPTER: TypeAdapter[str] = TypeAdapter(Key)
TIME_ADAPTER: TypeAdapter[datetime] = TypeAdapter(UTCTime)
