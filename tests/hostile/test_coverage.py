"""The coverage rule, without servers: every subject of the catalogue has a hostile corpus.

Refused variants are derived from a route's contract, so every route has them by construction; what
a new route needs from its author is one valid example (tests/hostile/examples.py), and what a new
topic needs is a trigger that makes its owner emit one (tests/hostile/sources.py). Until they exist
these tests fail, and so does the route's or topic's integration test.
"""

from __future__ import annotations

import msgspec.inspect as mi

from contracts import subjects as sub
from tests.hostile.corpus import ENVELOPES, _mutations
from tests.hostile.examples import ALLOWED_WRITES, EXAMPLES
from tests.hostile.sources import TRIGGERS


def test_every_route_has_a_valid_example() -> None:
    missing = sorted(r.name for r in sub.ROUTES if r.name not in EXAMPLES)
    assert not missing, f"routes without a valid example in tests/hostile/examples.py: {missing}"


def test_every_topic_has_a_trigger() -> None:
    missing = sorted(t.name for t in sub.TOPICS if t.name not in TRIGGERS)
    assert not missing, f"topics without a trigger in tests/hostile/sources.py: {missing}"


def test_nothing_is_listed_for_a_subject_that_is_gone() -> None:
    routes, topics = {r.name for r in sub.ROUTES}, {t.name for t in sub.TOPICS}
    assert set(EXAMPLES) <= routes, sorted(set(EXAMPLES) - routes)
    assert set(TRIGGERS) <= topics, sorted(set(TRIGGERS) - topics)
    assert set(ALLOWED_WRITES) <= routes, sorted(set(ALLOWED_WRITES) - routes)


def test_every_exception_to_nothing_written_says_why() -> None:
    topics = {t.name for t in sub.TOPICS}
    for route, allowed in ALLOWED_WRITES.items():
        assert allowed.why and allowed.events <= topics, route


def test_every_field_of_every_request_is_attacked() -> None:
    """Each field gets at least one refused variant of its own, whatever the example holds."""
    for route in sub.ROUTES:
        info = mi.type_info(route.request)
        assert isinstance(info, mi.StructType)
        attacked = {name.split(":", 1)[1] for name, _ in _mutations(info, {}, (), 0)}
        fields = {f.encode_name for f in info.fields}
        assert fields <= attacked, f"{route.name}: no variant for {sorted(fields - attacked)}"


def test_every_envelope_variant_expects_a_typed_code() -> None:
    from contracts.errors import ErrorCode

    assert set(ENVELOPES.values()) <= {c.value for c in ErrorCode}
