"""The audience counters' rules (chalicelib/domain/audience.py): which counters a write
moves and which a filter reads."""

from __future__ import annotations

import random

from chalicelib.domain.audience import (
    EVERYONE,
    CountKey,
    count_of,
    deltas,
    filter_keys,
    keys_of,
    tally,
)
from chalicelib.domain.clients import ClientProfile

ANN = ClientProfile(phone="79001234567", code="900", tag="vip", utc="UTC")


def test_a_created_client_counts_once_in_each_of_its_four_counters() -> None:
    assert deltas(None, ANN) == {
        CountKey("900", "vip"): 1,
        CountKey("900", None): 1,
        CountKey(None, "vip"): 1,
        EVERYONE: 1,
    }
    assert deltas(ANN, None) == dict.fromkeys(keys_of(ANN), -1)


def test_an_update_moves_only_what_changed() -> None:
    assert deltas(ANN, ClientProfile("79000000000", "900", "vip", "+03:00")) == {}
    assert deltas(ANN, ClientProfile(ANN.phone, "901", "vip", "UTC")) == {
        CountKey("900", "vip"): -1,
        CountKey("901", "vip"): 1,
        CountKey("900", None): -1,
        CountKey("901", None): 1,
    }
    assert deltas(ANN, ClientProfile(ANN.phone, "900", "", "UTC")) == {
        CountKey("900", "vip"): -1,
        CountKey("900", ""): 1,
        CountKey(None, "vip"): -1,
        CountKey(None, ""): 1,
    }


def test_a_filter_reads_pairs_codes_tags_or_everyone_each_once() -> None:
    assert filter_keys(["901", "900", "900"], ["a", "b"]) == [
        CountKey("900", "a"),
        CountKey("900", "b"),
        CountKey("901", "a"),
        CountKey("901", "b"),
    ]
    assert filter_keys(["900", "900"], []) == [CountKey("900", None)]
    assert filter_keys([], ["a", "a"]) == [CountKey(None, "a")]
    assert filter_keys([], []) == [EVERYONE]
    assert len(filter_keys([str(n) for n in range(100)], [str(n) for n in range(100)])) == 10_000


def test_counts_from_counters_equal_a_count_of_the_clients() -> None:
    """Random clients and filters: the counters' sum is the brute-force count."""
    rng = random.Random(18)
    codes, tags = ["900", "901", "902"], ["", "vip", "new", "x#y"]
    clients = [
        ClientProfile(f"7900{n:07d}", rng.choice(codes), rng.choice(tags), "UTC")
        for n in range(300)
    ]
    counters = tally(clients)
    for _ in range(200):
        want_codes = rng.sample(codes, rng.randint(0, 3)) * rng.randint(1, 2)
        want_tags = rng.sample(tags, rng.randint(0, 4))
        expected = sum(
            1
            for c in clients
            if (not want_codes or c.code in want_codes) and (not want_tags or c.tag in want_tags)
        )
        assert count_of(filter_keys(want_codes, want_tags), counters) == expected
