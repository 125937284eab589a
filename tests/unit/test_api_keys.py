"""Bearer parsing and key digests (no storage involved)."""

from __future__ import annotations

import pytest

from chalicelib.domain.api_keys import bearer_key, digest, key_id_of

KEY = "nk_abcdefghijklmnopqrstuvwxyz012345"


@pytest.mark.parametrize("header", [f"Bearer {KEY}", f"bearer {KEY}", f"  Bearer {KEY}  "])
def test_bearer_header_yields_the_key(header: str) -> None:
    assert bearer_key(header) == KEY


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        KEY,
        f"Basic {KEY}",
        f"Bearer  {KEY}",
        f"Bearer {KEY} extra",
        "Bearer short",
        "Bearer " + "x" * 513,
        f"Bearer {KEY}\u00e9",
    ],
)
def test_malformed_headers_yield_nothing(header: str | None) -> None:
    assert bearer_key(header) is None


def test_digest_is_sha256_and_the_id_its_prefix() -> None:
    value = digest("abc")
    assert value == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert key_id_of(value) == value[:32]
