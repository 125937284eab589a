"""Validation rules of the client directory (SPEC: Client)."""

from __future__ import annotations

import importlib.resources
import zoneinfo
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from chalicelib.domain.clients import normalize_phone, parse_utc
from chalicelib.errors import ValidationFailed
from chalicelib.schemas import ClientCreate, ClientUpdate, parse

VALID = {"phone": "79001234567", "code": "900", "tag": "vip", "utc": "Europe/Moscow"}


@pytest.mark.parametrize(
    ("given", "stored"),
    [("79001234567", "79001234567"), (79001234567, "79001234567"), ("70000000000", "70000000000")],
)
def test_phone_accepts_string_or_integer_form(given: object, stored: str) -> None:
    assert normalize_phone(given) == stored


@pytest.mark.parametrize(
    "given",
    [
        "89001234567",
        "7900123456",
        "790012345678",
        "+79001234567",
        "7900123456a",
        "7 900 123 45 67",
        "",
        89001234567,
        True,
        7.9001234567e10,
        None,
        ["79001234567"],
        "7\uff19001\uff11234567",  # full-width digits
    ],
)
def test_phone_rejects_everything_else(given: object) -> None:
    with pytest.raises(ValueError, match="7 followed by ten digits"):
        normalize_phone(given)


@pytest.mark.parametrize(
    ("zone", "offset"),
    [
        ("+03:00", timedelta(hours=3)),
        ("-05:30", timedelta(hours=-5, minutes=-30)),
        ("+14:00", timedelta(hours=14)),
        ("+00:00", timedelta(0)),
    ],
)
def test_fixed_offsets(zone: str, offset: timedelta) -> None:
    assert parse_utc(zone).utcoffset(None) == offset


@pytest.mark.parametrize("zone", ["Europe/Moscow", "Asia/Vladivostok", "America/New_York", "UTC"])
def test_iana_names(zone: str) -> None:
    assert parse_utc(zone) is not None


@pytest.mark.parametrize(
    "zone",
    ["Mars/Olympus", "+14:30", "+03:60", "+3:00", "03:00", "+0300", "", "../../etc/passwd", "msk"],
)
def test_bad_zones(zone: str) -> None:
    with pytest.raises(ValueError):
        parse_utc(zone)


def fields_of(model: type, payload: object) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as caught:
        parse(model, payload)
    assert caught.value.fields is not None
    return caught.value.fields


def test_valid_client_parses_and_normalizes_integer_phone() -> None:
    parsed = parse(ClientCreate, {**VALID, "phone": 79001234567})
    assert parsed.phone == "79001234567"
    assert parsed.tag == "vip"


def test_every_field_is_required_on_create() -> None:
    assert fields_of(ClientCreate, {}) == dict.fromkeys(
        ["phone", "code", "tag", "utc"], "field required"
    )


def test_empty_tag_is_allowed() -> None:
    assert parse(ClientCreate, {**VALID, "tag": ""}).tag == ""


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("code", ""),
        ("code", "x" * 101),
        ("code", 900),
        ("tag", "x" * 2001),
        ("tag", None),
        ("utc", "Mars/Olympus"),
        ("utc", 3),
        ("phone", "89001234567"),
    ],
)
def test_each_bad_field_is_named(field: str, value: object) -> None:
    assert set(fields_of(ClientCreate, {**VALID, field: value})) == {field}


def test_limits_are_inclusive() -> None:
    parsed = parse(ClientCreate, {**VALID, "code": "x" * 100, "tag": "y" * 2000})
    assert len(parsed.code) == 100
    assert len(parsed.tag) == 2000


def test_unknown_fields_are_rejected() -> None:
    assert fields_of(ClientCreate, {**VALID, "name": "Ann"}) == {"name": "unknown field"}
    assert fields_of(ClientUpdate, {"id": 5}) == {"id": "unknown field"}


def test_body_must_be_an_object() -> None:
    assert fields_of(ClientCreate, [VALID]) == {"body": "must be an object"}


def test_update_is_partial_and_refuses_nulls() -> None:
    assert parse(ClientUpdate, {"tag": "new"}).model_dump(exclude_unset=True) == {"tag": "new"}
    assert fields_of(ClientUpdate, {"tag": None}) == {"tag": "must not be null"}


def test_zone_rules_come_from_the_pinned_tzdata_not_the_host(tmp_path: Path) -> None:
    """A host whose zone files differ (an older or newer system tzdata, or one edited)
    must not change a client's zone: Lambda and the local run read the same rules."""
    fake = tmp_path / "Europe"
    fake.mkdir()
    # A zone file saying Europe/Moscow is UTC+0: what a host's own copy could say.
    fake.joinpath("Moscow").write_bytes(tzdata_file("UTC"))
    zoneinfo.reset_tzpath(to=[str(tmp_path)])
    zoneinfo.ZoneInfo.clear_cache()
    try:
        zone = parse_utc("Europe/Moscow")
        assert zone.utcoffset(datetime(2026, 1, 1)) == timedelta(hours=3)
    finally:
        zoneinfo.reset_tzpath()
        zoneinfo.ZoneInfo.clear_cache()


def tzdata_file(name: str) -> bytes:
    return importlib.resources.files("tzdata").joinpath("zoneinfo", name).read_bytes()
