"""Pydantic models of the HTTP contract: request validation and response shapes.

They are the single source of the OpenAPI document. Requests forbid unknown fields and
never coerce types silently (``"code": 900`` is an error, not ``"900"``); the phone is
the one field that accepts two spellings, as ``docs/SPEC.md`` says.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from chalicelib.domain.clients import CODE_MAX, TAG_MAX, normalize_phone, validate_utc
from chalicelib.domain.messages import MessageStatus
from chalicelib.domain.stoplist import REASON_MAX
from chalicelib.domain.tasks import (
    FILTER_MAX_ITEMS,
    RATE_LIMIT_MAX,
    TEXT_MAX,
    TaskStatus,
    parse_hhmm,
    parse_instant,
)
from chalicelib.domain.test_sends import MAX_PHONES, TestSendStatus
from chalicelib.errors import ValidationFailed

Phone = Annotated[
    str,
    BeforeValidator(normalize_phone),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": "^7[0-9]{10}$"},
                {"type": "integer", "minimum": 70000000000, "maximum": 79999999999},
            ],
            "description": "7 followed by ten digits; an integer of that form is accepted",
            "examples": ["79001234567"],
        }
    ),
]
Code = Annotated[
    str, Field(min_length=1, max_length=CODE_MAX, description="Operator code", examples=["900"])
]
Tag = Annotated[str, Field(max_length=TAG_MAX, description="Free label, may be empty")]
Utc = Annotated[
    str,
    AfterValidator(validate_utc),
    Field(
        description="IANA zone name (Europe/Moscow) or fixed offset (+03:00)",
        examples=["Europe/Moscow", "Asia/Vladivostok", "+03:00", "-05:30"],
    ),
]


def _null_only_where_meaningful(schema: dict[str, Any], model: type[Any]) -> None:
    """Document what :func:`parse` enforces: an optional field may be left out, but
    ``null`` is refused except for the fields listed in ``NULLABLE``."""
    nullable: frozenset[str] = getattr(model, "NULLABLE", frozenset())
    for name, prop in schema.get("properties", {}).items():
        if name in nullable or not isinstance(prop, dict) or "anyOf" not in prop:
            continue
        choices = [choice for choice in prop["anyOf"] if choice != {"type": "null"}]
        if prop.get("default", "") is None:
            del prop["default"]
        if len(choices) == 1:
            del prop["anyOf"]
            prop.update({**choices[0], **prop})
        else:
            prop["anyOf"] = choices


class RequestModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, json_schema_extra=_null_only_where_meaningful
    )
    # Fields where an explicit ``null`` means something (removing an optional setting).
    NULLABLE: ClassVar[frozenset[str]] = frozenset()


class ClientCreate(RequestModel):
    phone: Phone
    code: Code
    tag: Tag
    utc: Utc


class ClientUpdate(RequestModel):
    """Partial update: only the fields present change; ``null`` is not a value."""

    phone: Phone | None = None
    code: Code | None = None
    tag: Tag | None = None
    utc: Utc | None = None


class ClientFilter(RequestModel):
    """The filters of ``GET /api/clients``: only clients with this code and/or this tag."""

    code: Code | None = None
    tag: Tag | None = None


def _instant(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string with an offset or Z")
    return parse_instant(value)


def _hhmm(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be HH:MM")
    parse_hhmm(value)
    return value


Instant = Annotated[
    datetime,
    BeforeValidator(_instant),
    Field(description="ISO 8601 with an offset or Z; answered in UTC with Z"),
]
HHMM = Annotated[
    str,
    BeforeValidator(_hhmm),
    Field(
        description="Local time HH:MM (00:00 to 23:59)",
        json_schema_extra={"pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
    ),
]
FilterCode = Annotated[str, Field(min_length=1, max_length=CODE_MAX)]
FilterTag = Annotated[str, Field(min_length=1, max_length=TAG_MAX)]


class TaskFilter(RequestModel):
    """A client matches when its code is in ``codes`` (or it is empty) AND its tag is in
    ``tags`` (or it is empty); ``{}`` targets every client."""

    codes: list[FilterCode] = Field(default_factory=list, max_length=FILTER_MAX_ITEMS)
    tags: list[FilterTag] = Field(default_factory=list, max_length=FILTER_MAX_ITEMS)


class SendWindowIn(RequestModel):
    """Send only while the client's local time is in ``[from, to)``; ``from`` after ``to``
    crosses midnight (``22:00``-``06:00``)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    start: HHMM = Field(alias="from")
    end: HHMM = Field(alias="to")

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.start == self.end:
            raise ValueError("from and to must differ")
        return self


Text = Annotated[str, Field(min_length=1, max_length=TEXT_MAX)]
# Messages a second to the provider, at most (SPEC: campaign controls).
RateLimit = Annotated[int, Field(ge=1, le=RATE_LIMIT_MAX)]


# An end after the start and in the future is checked with an update's changes too, by
# ``check_times`` in ``chalicelib/domain/tasks.py``: it needs the clock and the stored task.
# (No docstring here: it would become the schema's description in openapi.json.)
class TaskCreate(RequestModel):
    NULLABLE: ClassVar[frozenset[str]] = frozenset({"send_window", "rate_limit"})

    start_time: Instant
    end_time: Instant
    text: Text
    filter: TaskFilter = Field(default_factory=TaskFilter)
    send_window: SendWindowIn | None = None
    rate_limit: RateLimit | None = None


class TaskUpdate(RequestModel):
    """Partial update; ``send_window: null`` removes the window."""

    NULLABLE: ClassVar[frozenset[str]] = frozenset({"send_window", "rate_limit"})

    start_time: Instant | None = None
    end_time: Instant | None = None
    text: Text | None = None
    filter: TaskFilter | None = None
    send_window: SendWindowIn | None = None
    rate_limit: RateLimit | None = None


# Answers give every instant in UTC with ``Z``.
InstantOut = Annotated[
    str, Field(description="UTC, ISO 8601 with Z", json_schema_extra={"format": "date-time"})
]


class FilterOut(BaseModel):
    codes: list[str]
    tags: list[str]


class SendWindowOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    start: str = Field(alias="from")
    end: str = Field(alias="to")


class TaskOut(BaseModel):
    id: int
    start_time: InstantOut
    end_time: InstantOut
    text: str
    filter: FilterOut
    send_window: SendWindowOut | None
    rate_limit: int | None
    status: TaskStatus
    created_at: InstantOut
    updated_at: InstantOut


class MessageCounts(BaseModel):
    pending: int
    sent: int
    failed: int
    expired: int
    cancelled: int
    suppressed: int


class TaskStatsItem(BaseModel):
    id: int
    status: TaskStatus
    start_time: InstantOut
    end_time: InstantOut
    total: int
    messages: MessageCounts


class MessageOut(BaseModel):
    id: int = Field(description="The msgId the provider receives")
    client_id: int
    status: Annotated[str, Field(json_schema_extra={"enum": [s.value for s in MessageStatus]})]
    created_at: InstantOut
    sent_at: InstantOut | None = Field(description="When the provider accepted it")
    attempts: int = Field(description="Provider calls made so far")
    last_error: str | None = Field(description="Why the last attempt failed")


class TaskStatsDetail(BaseModel):
    task: TaskOut
    total: int
    messages: MessageCounts
    items: list[MessageOut]
    next: str | None = Field(description="Cursor of the next page of messages")


class TimelinePoint(BaseModel):
    at: InstantOut = Field(description="The bucket's start")
    sent: int
    failed: int
    expired: int
    cancelled: int
    suppressed: int


class TaskTimeline(BaseModel):
    task_id: int
    bucket_seconds: int = Field(description="Each point's length: 60, 300, 900, 3600 or 86400")
    points: list[TimelinePoint] = Field(
        description="In time order from the first bucket with a count to the last, "
        "zero-filled between; empty while no message has reached a final status"
    )


class ProcessReport(BaseModel):
    tasks: int = Field(description="Due tasks looked at")
    enqueued: int = Field(description="Send jobs queued by this call")
    finished: int = Field(description="Tasks that finished during this call")


class ClientOut(BaseModel):
    id: int
    phone: str
    code: str
    tag: str
    utc: str


ItemT = TypeVar("ItemT", bound=BaseModel)


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    next: str | None = Field(description="Cursor of the next page, null on the last one")


class StopEntryCreate(RequestModel):
    phone: Phone
    reason: (
        Annotated[
            str,
            Field(
                max_length=REASON_MAX,
                description="Why the phone is stopped, for people reading the list",
                examples=["asked not to be contacted"],
            ),
        ]
        | None
    ) = None


class StopEntryOut(BaseModel):
    phone: str
    reason: str | None = Field(description="null when none was given")
    created_at: InstantOut


class AudiencePreviewIn(RequestModel):
    filter: TaskFilter = Field(default_factory=TaskFilter)


class AudiencePreviewOut(BaseModel):
    count: int = Field(description="Exactly how many clients the filter matches now")
    sample: list[ClientOut] = Field(
        description="Some of them (at most 10): the first the mailing's own reading finds"
    )


class TestSendIn(RequestModel):
    __test__ = False  # not a pytest test class

    phones: list[Phone] = Field(
        min_length=1,
        max_length=MAX_PHONES,
        description="1 to 5 phones; a phone named twice gets one send (and one result)",
    )


class TestSendResultOut(BaseModel):
    __test__ = False

    phone: str
    status: Annotated[
        str,
        Field(
            description="`sent`: the provider accepted it; `failed`: it did not (see "
            "`error`); `suppressed`: the phone is on the stop list, no call was made",
            json_schema_extra={"enum": [s.value for s in TestSendStatus]},
        ),
    ]
    error: str | None = Field(
        description="Why it was not sent (the provider's answer, such as `HTTP 400` or "
        "`timeout`); null when sent"
    )


class TestSendOut(BaseModel):
    __test__ = False

    results: list[TestSendResultOut] = Field(
        description="One per distinct phone, in the order the request named them"
    )


class ImportCreate(RequestModel):
    format: Annotated[
        Literal["csv"],
        Field(description="The file's format: `csv` (UTF-8, a header row phone,code,tag,utc)"),
    ]


class NewImportOut(BaseModel):
    id: int
    status: Annotated[str, Field(json_schema_extra={"enum": ["waiting_upload"]})]
    upload_url: str = Field(
        description='PUT the file here (`curl -T clients.csv "$upload_url"`), '
        "no header needed, before `expires_at`"
    )
    expires_at: InstantOut


class ImportErrorOut(BaseModel):
    line: int = Field(description="The row's line in the file; the header is line 1")
    field: str = Field(
        description="The column at fault; `line` for the row as a whole, `header` or "
        "`file` for what failed the import"
    )
    message: str


class ImportOut(BaseModel):
    id: int
    status: Annotated[
        str,
        Field(
            description="`waiting_upload` until the file is there, `running`, then `done`; "
            "`failed` when the file as a whole cannot be imported (see `errors`)",
            json_schema_extra={"enum": ["waiting_upload", "running", "done", "failed"]},
        ),
    ]
    rows: int = Field(description="Rows read so far (blank lines are not rows)")
    created: int = Field(description="Clients created")
    updated: int = Field(description="Clients updated (their phone was a client's already)")
    rejected: int = Field(description="Rows rejected: nothing was applied for them")
    errors: list[ImportErrorOut] = Field(description="The first 100 errors, by line")
    error_report_url: str | None = Field(
        description="Once done with rejected rows: every error, as CSV (line,field,message), "
        "through a pre-signed URL; null otherwise"
    )


class ExportCreate(RequestModel):
    task_id: Annotated[
        int, Field(ge=1, le=2**63 - 1, description="The task whose messages are exported")
    ]


EXPORT_STATUS = Annotated[
    str,
    Field(
        description="`running` while the messages are written, then `done` (the file is "
        "ready); `failed` when it cannot finish (start a new export)",
        json_schema_extra={"enum": ["running", "done", "failed"]},
    ),
]


class NewExportOut(BaseModel):
    id: int
    status: EXPORT_STATUS


class ExportOut(BaseModel):
    id: int
    status: EXPORT_STATUS
    rows: int = Field(description="Messages written so far (all of them once done)")
    download_url: str | None = Field(
        description="Once done: the CSV file (id,client_id,phone,status,created_at,sent_at,"
        "attempts,last_error) through a pre-signed GET URL valid for an hour, a new one at "
        "each read; null before"
    )


class HealthOut(BaseModel):
    status: str


class ErrorOut(BaseModel):
    """Every error answer (SPEC: errors); ``fields`` only comes with validation errors."""

    error: str = Field(description="Machine-readable code, such as validation_error")
    message: str = Field(description="What went wrong, for a person")
    fields: dict[str, str] = Field(
        default_factory=dict, description="Only for validation errors: field -> what is wrong"
    )


ModelT = TypeVar("ModelT", bound=RequestModel)

_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "field required",
}


def validation_fields(error: ValidationError) -> dict[str, str]:
    """Flatten pydantic's errors into ``{"field": "what is wrong"}``."""
    fields: dict[str, str] = {}
    for item in error.errors(include_url=False):
        loc = [str(part) for part in item["loc"]]
        name = ".".join(loc) or "body"
        message = _MESSAGES.get(item["type"], item["msg"])
        message = message.removeprefix("Value error, ")
        fields.setdefault(name, message)
    return fields


def parse(model: type[ModelT], payload: Any) -> ModelT:
    """Validate a decoded JSON body against ``model`` or raise ValidationFailed."""
    if not isinstance(payload, dict):
        raise ValidationFailed("The body must be a JSON object.", {"body": "must be an object"})
    explicit_nulls = [
        key for key, value in payload.items() if value is None and key not in model.NULLABLE
    ]
    try:
        parsed = model.model_validate(payload)
    except ValidationError as exc:
        raise ValidationFailed("The request has invalid fields.", validation_fields(exc)) from exc
    if explicit_nulls:
        raise ValidationFailed(
            "The request has invalid fields.", dict.fromkeys(explicit_nulls, "must not be null")
        )
    return parsed
