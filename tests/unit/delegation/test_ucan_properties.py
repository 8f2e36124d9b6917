"""Any random attenuation that stays within verifies; any random widening is refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.capabilities import Capability
from shared.ucan import DelegationError
from tests.unit.capabilities.cap_strategies import capabilities, narrower, wider
from tests.unit.delegation.chains import build, verify

DEPTH = 4


@st.composite
def attenuating_chain(draw: st.DrawFn) -> list[list[Capability]]:
    """Capabilities for each link: the root's at random, each next link narrowing some of its parent's."""
    links = [draw(st.lists(capabilities(), min_size=1, max_size=3))]
    for _ in range(DEPTH - 1):
        parent = links[-1]
        chosen = draw(st.lists(st.sampled_from(parent), max_size=3)) if parent else []
        links.append([draw(narrower(cap)) for cap in chosen])
    return links


@st.composite
def widening_chain(draw: st.DrawFn) -> tuple[int, str, list[list[Capability]]]:
    """One capability narrowed down the chain, then widened by one move at a random link."""
    links = [[draw(capabilities())]]
    at = draw(st.integers(1, DEPTH - 1))
    move = ""
    for i in range(1, DEPTH):
        parent = links[-1][0]
        if i == at:
            move, child = draw(wider(parent))
        else:
            child = draw(narrower(parent))
        links.append([child])
    return at, move, links


@settings(max_examples=60, deadline=None)
@given(attenuating_chain())
def test_any_attenuation_that_stays_within_verifies(links: list[list[Capability]]) -> None:
    chain = build(DEPTH, overrides={i: {"caps": caps} for i, caps in enumerate(links)})
    assert verify(chain).depth == DEPTH


@settings(max_examples=60, deadline=None)
@given(widening_chain())
def test_any_widening_is_refused(case: tuple[int, str, list[list[Capability]]]) -> None:
    at, move, links = case
    chain = build(DEPTH, overrides={i: {"caps": caps} for i, caps in enumerate(links)})
    with pytest.raises(DelegationError) as info:
        verify(chain)
    assert info.value.code == "widened", (at, move)
