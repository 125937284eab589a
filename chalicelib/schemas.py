"""Pydantic models of the HTTP contract: request validation and response shapes.

They are the single source of the OpenAPI document. Requests forbid unknown fields and
never coerce types silently (``"code": 900`` is an error, not ``"900"``); the phone is
the one field that accepts two spellings, as SPEC.md says.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from chalicelib.domain.clients import CODE_MAX, TAG_MAX, normalize_phone, validate_utc
from chalicelib.errors import ValidationFailed

Phone = Annotated[
    str,
    BeforeValidator(normalize_phone),
    Field(description="7 followed by ten digits; an integer of that form is accepted"),
]
Code = Annotated[str, Field(min_length=1, max_length=CODE_MAX, description="Operator code")]
Tag = Annotated[str, Field(max_length=TAG_MAX, description="Free label, may be empty")]
Utc = Annotated[
    str,
    AfterValidator(validate_utc),
    Field(description="IANA zone name (Europe/Moscow) or fixed offset (+03:00)"),
]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


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


class ErrorOut(BaseModel):
    error: str
    message: str
    fields: dict[str, str] | None = None


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
    explicit_nulls = [key for key, value in payload.items() if value is None]
    try:
        parsed = model.model_validate(payload)
    except ValidationError as exc:
        raise ValidationFailed("The request has invalid fields.", validation_fields(exc)) from exc
    if explicit_nulls:
        raise ValidationFailed(
            "The request has invalid fields.", dict.fromkeys(explicit_nulls, "must not be null")
        )
    return parsed
