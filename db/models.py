"""The tables: customers, their KYC verifications, API keys, the event feed and webhooks."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, String
from sqlalchemy import DateTime as SADateTime
from sqlalchemy import Enum as SAEnum
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

# Named constraints and indexes, so that migrations can refer to them on every backend.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class KycStatus(enum.StrEnum):
    """Where a verification stands; see the transition table in `db.kyc`."""

    PENDING = "PENDING"
    VERIFIED = "VERIFIED"
    UNDER_REVIEW = "UNDER_REVIEW"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    VERIFIED_MANUALLY = "VERIFIED_MANUALLY"
    REJECTED_MANUALLY = "REJECTED_MANUALLY"


class KycType(enum.StrEnum):
    """What a verification checks."""

    PROOF_OF_ID = "PROOF_OF_ID"


def utc_now() -> datetime:
    """The current instant in UTC, at the millisecond precision that the database keeps."""
    return _whole_millis(datetime.now(UTC))  # in UTC already: no conversion (every request's)


def to_millis(moment: datetime) -> datetime:
    """The instant in UTC, cut to whole milliseconds (what the API shows and the tables keep)."""
    return _whole_millis(moment.astimezone(UTC))


def _whole_millis(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime with millisecond precision on every backend.

    PostgreSQL keeps a `timestamptz`; SQLite has no time zones, so the value is stored as naive
    UTC text (fixed width, so it sorts in time order) and made aware again when read.
    """

    impl = SADateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        value = to_millis(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _binary_string(length: int) -> String:
    """A string compared by code point on every backend.

    SQLite compares bytes; PostgreSQL would use the database's locale, which orders and
    matches prefixes differently. "C" makes both agree, and makes a prefix a plain range.
    """
    return String(length).with_variant(String(length, collation="C"), "postgresql")


def _folded_key(of_length: int) -> String:
    """A case-folded copy of a value of at most `of_length` characters, compared as
    `_binary_string` is. Folding can lengthen text ("ß" folds to "ss", "ﬃ" to "ffi"), so on
    PostgreSQL, which enforces lengths, the key has none: the value's own column bounds it.
    SQLite enforces no length, and keeps the value's in its declared type (migration 0011)."""
    return String(of_length).with_variant(String(collation="C"), "postgresql")


def _enum_column(kind: type[enum.StrEnum], **kwargs: Any) -> Column[Any]:
    # Stored as VARCHAR, not a native enum, so a new status is a code change, not a migration.
    return Column(SAEnum(kind, native_enum=False, length=32, create_constraint=False), **kwargs)


class Customer(SQLModel, table=True):
    """A customer, known by the id that the client's own system gave it."""

    __tablename__: ClassVar[str] = "customer"
    # Every ordering and every filter that can match many rows has an index whose columns
    # end in the page order, so a page at any depth is one index seek.
    __table_args__ = (
        Index("ix_customer_created_at", "created_at", "id"),
        Index("ix_customer_updated_at", "updated_at", "id"),
        Index("ix_customer_kyc_status", "kyc_status", "created_at", "id"),
        Index("ix_customer_country", "country", "created_at", "id"),
        Index("ix_customer_external_id_key", "external_id_key"),
        Index("ix_customer_first_name_key", "first_name_key"),
        Index("ix_customer_last_name_key", "last_name_key"),
        # On SQLite too an id is never handed out again (a global id names one customer for
        # good): migration 0006.
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    external_customer_id: str = Field(
        sa_column=Column(_binary_string(255), nullable=False, unique=True)
    )
    email: str = Field(sa_column=Column(String(320), nullable=False))
    # Case-folded copies of what is matched or sorted regardless of case, the same on every
    # backend (SQLite's lower() folds ASCII only): the e-mail's is unique, and the e-mail
    # filter and order use it; the others serve the case-insensitive prefix search.
    email_key: str = Field(sa_column=Column(_binary_string(320), nullable=False, unique=True))
    external_id_key: str = Field(sa_column=Column(_folded_key(255), nullable=False))
    first_name_key: str | None = Field(default=None, sa_column=Column(_folded_key(100)))
    last_name_key: str | None = Field(default=None, sa_column=Column(_folded_key(100)))
    phone: str | None = Field(default=None, sa_column=Column(String(20)))
    first_name: str | None = Field(default=None, sa_column=Column(String(100)))
    last_name: str | None = Field(default=None, sa_column=Column(String(100)))
    street: str | None = Field(default=None, sa_column=Column(String(200)))
    street2: str | None = Field(default=None, sa_column=Column(String(200)))
    state: str | None = Field(default=None, sa_column=Column(String(2)))
    city: str | None = Field(default=None, sa_column=Column(String(100)))
    zip: str | None = Field(default=None, sa_column=Column(String(10)))
    country: str | None = Field(default=None, sa_column=Column(String(2)))
    # The status of the newest verification, kept in the same transaction as every transition,
    # so that filtering by it needs no scan of the history.
    kyc_status: KycStatus | None = Field(default=None, sa_column=_enum_column(KycStatus))
    # When the newest verification was started: with the time to live, it tells whether a
    # PENDING status has expired before the sweep has got to it.
    kyc_started_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class KycVerification(SQLModel, table=True):
    """One identity-verification attempt of a customer; it goes when its customer goes."""

    __tablename__: ClassVar[str] = "kyc_verification"
    __table_args__ = (
        Index("ix_kyc_verification_customer", "customer_id", "id"),
        Index("ix_kyc_verification_status_created", "status", "created_at"),
        {"sqlite_autoincrement": True},  # as the customer's
    )

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    customer_id: int = Field(
        sa_column=Column(Integer, ForeignKey("customer.id", ondelete="CASCADE"), nullable=False)
    )
    type: KycType = Field(sa_column=_enum_column(KycType, nullable=False))
    status: KycStatus = Field(sa_column=_enum_column(KycStatus, nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class ApiKey(SQLModel, table=True):
    """A key a client sends as `Authorization: Bearer <key>`; only its hash is stored."""

    __tablename__: ClassVar[str] = "api_key"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    name: str = Field(sa_column=Column(String(100), nullable=False, unique=True))
    # The key's first characters, shown by `keys list` so that people can tell keys apart.
    prefix: str = Field(sa_column=Column(String(16), nullable=False))
    # SHA-256 of the key: keys are 32 random bytes, so a fast hash cannot be searched back.
    key_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    scopes: str = Field(sa_column=Column(String(200), nullable=False))  # space-separated
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    last_used_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    # Who made and who revoked the key, as events name actors (`key:<name>`, `system:cli`);
    # NULL for keys made before these were recorded.
    created_by: str | None = Field(default=None, sa_column=Column(String(255)))
    revoked_by: str | None = Field(default=None, sa_column=Column(String(255)))
    # Its own rate-limit bucket (points, and points a second); NULL: the server's defaults.
    max_cost: int | None = Field(default=None, sa_column=Column(Integer))
    restore_rate: float | None = Field(default=None, sa_column=Column(Float))


class ServerSecret(SQLModel, table=True):
    """A secret every replica of the server shares, made on the first start that needs it."""

    __tablename__: ClassVar[str] = "server_secret"

    name: str = Field(sa_column=Column(String(64), primary_key=True))
    value: str = Field(sa_column=Column(String(128), nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class EventType(enum.StrEnum):
    """What happened to a customer; one event for each committed change."""

    CUSTOMER_CREATED = "customer_created"
    CUSTOMER_UPDATED = "customer_updated"
    CUSTOMER_DELETED = "customer_deleted"
    KYC_VERIFICATION_STARTED = "kyc_verification_started"
    KYC_VERIFICATION_STATUS_CHANGED = "kyc_verification_status_changed"


class EventCounter(SQLModel, table=True):
    """The feed's single counter row: where the feed ends and how far it was pruned.

    A writing transaction updates this row before it inserts its events, so it holds the
    row's lock until it commits: the next writer gets its numbers only after that commit, so
    numbers are handed out in commit order (see `db.events`).
    """

    __tablename__: ClassVar[str] = "event_counter"

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    last: int = Field(sa_column=Column(BigInteger, nullable=False))  # the newest event's number
    pruned_through: int = Field(sa_column=Column(BigInteger, nullable=False))  # none at or below


class CustomerEvent(SQLModel, table=True):
    """One change, told without personal data: whose, what kind, which fields, by whom."""

    __tablename__: ClassVar[str] = "customer_event"
    __table_args__ = (
        Index("ix_customer_event_customer", "external_customer_id", "id"),
        Index("ix_customer_event_recorded_at", "recorded_at"),
    )

    # The position in the feed, from `EventCounter.last`: the feed's order is this number's.
    id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    type: EventType = Field(sa_column=_enum_column(EventType, nullable=False))
    external_customer_id: str = Field(sa_column=Column(_binary_string(255), nullable=False))
    # The names (columns) of the data fields a CUSTOMER_UPDATED changed, space-separated.
    changed_fields: str = Field(sa_column=Column(String(200), nullable=False))
    # KYC events: the verification as the change left it.
    verification_id: int | None = Field(default=None, sa_column=Column(Integer))
    verification_type: KycType | None = Field(default=None, sa_column=_enum_column(KycType))
    status: KycStatus | None = Field(default=None, sa_column=_enum_column(KycStatus))
    previous_status: KycStatus | None = Field(default=None, sa_column=_enum_column(KycStatus))
    verification_created_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    actor: str = Field(sa_column=Column(String(255), nullable=False))
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    recorded_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))  # for pruning
    # The W3C traceparent of the traced request that wrote it (web/tracing.py): its webhook
    # deliveries continue that trace. Ids only, no data; None when tracing was off.
    traceparent: str | None = Field(default=None, sa_column=Column(String(55)))


class DeliveryStatus(enum.StrEnum):
    """Where a webhook delivery stands."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class WebhookEndpoint(SQLModel, table=True):
    """A URL that receives the feed's events, signed with the endpoint's secret."""

    __tablename__: ClassVar[str] = "webhook_endpoint"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    url: str = Field(sa_column=Column(String(2048), nullable=False))
    event_types: str = Field(sa_column=Column(String(200), nullable=False))  # empty: every type
    enabled: bool = Field(sa_column=Column(Boolean, nullable=False))
    # The signing secret, encrypted with WEBHOOK_SECRET_KEY (see `db.webhooks`).
    secret: str = Field(sa_column=Column(String(200), nullable=False))
    # The last event this endpoint has had a delivery made for (or skipped, when disabled).
    enqueued_through: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    # The newest of its deliveries that is settled (succeeded or failed for good): the next
    # one to send comes after it. Only a place to start looking for the oldest pending
    # delivery (see `db.webhooks.heads`), never past it.
    settled_through: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    # The newest of its deliveries (0 before the first): none of them is past it.
    queued_through: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint: sent until it succeeds or fails for good."""

    __tablename__: ClassVar[str] = "webhook_delivery"
    __table_args__ = (Index("ix_webhook_delivery_endpoint", "endpoint_id", "status", "id"),)

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    endpoint_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("webhook_endpoint.id", ondelete="CASCADE"), nullable=False
        )
    )
    event_id: int = Field(sa_column=Column(BigInteger, nullable=False))  # outlives the event
    status: DeliveryStatus = Field(sa_column=_enum_column(DeliveryStatus, nullable=False))
    attempts: int = Field(sa_column=Column(Integer, nullable=False))
    last_response_status: int | None = Field(default=None, sa_column=Column(Integer))
    last_error: str | None = Field(default=None, sa_column=Column(String(200)))
    # When the next attempt may start; while one runs, the end of its lease.
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    delivered_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))


class WebhookAttempt(SQLModel, table=True):
    """Every attempt of a delivery: when, and what came back."""

    __tablename__: ClassVar[str] = "webhook_attempt"
    __table_args__ = (Index("ix_webhook_attempt_delivery", "delivery_id", "id"),)

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    delivery_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("webhook_delivery.id", ondelete="CASCADE"), nullable=False
        )
    )
    attempted_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    response_status: int | None = Field(default=None, sa_column=Column(Integer))
    error: str | None = Field(default=None, sa_column=Column(String(200)))
    duration_ms: int = Field(sa_column=Column(Integer, nullable=False))
