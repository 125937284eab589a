"""The client directory: what a client is, and the rules for phones and time zones."""

from __future__ import annotations

import functools
import importlib.resources
import re
import zoneinfo
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone, tzinfo

PHONE_RE = re.compile(r"7[0-9]{10}")
OFFSET_RE = re.compile(r"([+-])([0-9]{2}):([0-9]{2})")
# Real-world offsets run from -12:00 to +14:00.
MAX_OFFSET = timedelta(hours=14)

CODE_MAX = 100
TAG_MAX = 2000


@dataclass(frozen=True)
class ClientProfile:
    """What a client is to a mailing: each value already valid (see the rules below)."""

    phone: str
    code: str
    tag: str
    utc: str


@dataclass(frozen=True)
class Client(ClientProfile):
    """A client as stored: its profile, and what the service assigned and keeps."""

    id: int
    created_at: datetime
    updated_at: datetime
    # Optimistic lock: the stored version this value was read at (None: stored before
    # versions, and not changed since).
    version: int | None


@dataclass(frozen=True)
class ClientChanges:
    """A partial update: the fields given, each already valid; None leaves one as it is."""

    phone: str | None = None
    code: str | None = None
    tag: str | None = None
    utc: str | None = None

    def given(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def applied_to(self, profile: ClientProfile) -> ClientProfile:
        """The profile alone (a client is a profile too), with these changes."""
        current = {f.name: getattr(profile, f.name) for f in fields(ClientProfile)}
        return ClientProfile(**{**current, **{name: getattr(self, name) for name in self.given()}})


def changed_fields(before: ClientProfile, after: ClientProfile) -> list[str]:
    return [
        f.name for f in fields(ClientProfile) if getattr(before, f.name) != getattr(after, f.name)
    ]


def normalize_phone(value: object) -> str:
    """Accept ``"7XXXXXXXXXX"`` or the same as an integer; return the string form."""
    if isinstance(value, bool):  # bool is an int subclass; True is not a phone
        raise ValueError("must be 7 followed by ten digits")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not PHONE_RE.fullmatch(value):
        raise ValueError("must be 7 followed by ten digits")
    return value


# Names whose meaning depends on the host: its own zone (``localtime``, and
# ``posixrules``, a copy of some zone), tzdata's "no zone" placeholder (``Factory``), and
# the copies some systems keep under ``posix/`` and ``right/`` (leap seconds included).
HOST_DEPENDENT_ZONES = frozenset({"localtime", "Factory", "posixrules"})
HOST_DEPENDENT_PREFIXES = ("posix/", "right/")


@functools.cache
def _zone_names() -> frozenset[str]:
    """The zone names valid on every host: those of the ``tzdata`` package, which is
    pinned and packaged with the code, so the list is the same locally and in Lambda
    whatever the host's own zone files hold."""
    try:
        listing = importlib.resources.files("tzdata").joinpath("zones").read_text("utf-8")
        names = set(listing.split())
    except (ModuleNotFoundError, OSError):  # pragma: no cover - tzdata is a requirement
        names = set(zoneinfo.available_timezones())
    return frozenset(
        name
        for name in names
        if name not in HOST_DEPENDENT_ZONES and not name.startswith(HOST_DEPENDENT_PREFIXES)
    )


def parse_utc(value: str) -> tzinfo:
    """Turn a client's ``utc`` (IANA name or ``+HH:MM``) into a tzinfo, or raise ValueError."""
    match = OFFSET_RE.fullmatch(value)
    if match:
        sign, hours, minutes = match.groups()
        if int(minutes) >= 60:
            raise ValueError("offset minutes must be below 60")
        offset = timedelta(hours=int(hours), minutes=int(minutes))
        if offset > MAX_OFFSET:
            raise ValueError("offset must be between -14:00 and +14:00")
        return timezone(-offset if sign == "-" else offset)
    # Only names from the zone database: rejects paths and odd spellings outright.
    if value not in _zone_names():
        raise ValueError("must be an IANA time zone name (Europe/Moscow) or an offset (+03:00)")
    return _zone(value)


@functools.cache
def _zone(name: str) -> tzinfo:
    """The zone's rules from the pinned ``tzdata`` package, never the host's own files
    (``zoneinfo.ZoneInfo`` reads ``/usr/share/zoneinfo`` first, whose rules differ from
    host to host and from Lambda's): a client's window is the same wherever it runs."""
    try:
        source = importlib.resources.files("tzdata").joinpath("zoneinfo", *name.split("/"))
        with source.open("rb") as rules:
            return zoneinfo.ZoneInfo.from_file(rules, key=name)
    except (ModuleNotFoundError, OSError):  # pragma: no cover - tzdata is a requirement
        return zoneinfo.ZoneInfo(name)


def validate_utc(value: str) -> str:
    parse_utc(value)
    return value
