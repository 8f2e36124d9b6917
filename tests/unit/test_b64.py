"""Strict base64url: one text per byte string, everything else refused."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.b64 import Base64Error, b64u_decode, b64u_encode

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(st.binary(max_size=64))
def test_round_trip(data: bytes) -> None:
    assert b64u_decode(b64u_encode(data)) == data
    assert b64u_decode(b64u_encode(data).encode("ascii")) == data


@settings(max_examples=500)
@given(st.text(alphabet=ALPHABET, max_size=24))
def test_a_text_decodes_only_when_it_is_the_one_spelling_of_its_bytes(text: str) -> None:
    """Against the standard library: decode with padding, then re-encode. A text whose unused
    trailing bits are set decodes to the same bytes as another text, so it is refused."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        canonical = base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == text
    except ValueError:
        canonical = False
    if canonical:
        assert b64u_decode(text) == raw
    else:
        with pytest.raises(Base64Error):
            b64u_decode(text)


@pytest.mark.parametrize("text", [
    "AB",                 # 4 trailing bits set ("AA" is the one spelling of b"\0")
    "AAB",                # 2 trailing bits set
    "AA==",               # padding
    "AAA=",
    "A",                  # 6 bits: no byte
    "+/8",                # the other alphabet
    "AA A",
    "AAAA\n",
    "é",
    b"\xff\xfe",
])
def test_refusals(text: str | bytes) -> None:
    with pytest.raises(Base64Error):
        b64u_decode(text)
