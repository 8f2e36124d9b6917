"""Fuzzing the bus's own decoders, without servers: whatever the bytes or headers, the answer is a
decoded message or the typed error, never another exception.

- `shared.bus.client.decode` for every struct of the catalogue (requests, replies, events, errors):
  only `InvalidRequest`.
- `shared.bus.signing.authenticate` with any headers: only InvalidSignature, UnknownSender,
  StaleMessage (and a genuine message still authenticates).
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from contracts import headers as H
from contracts import subjects as sub
from contracts.errors import Error
from shared.b64 import b64u_encode
from shared.bus.client import decode
from shared.bus.registry import SenderKey, StaticRegistry
from shared.bus.signing import Signer, authenticate, sign
from shared.errors import InvalidRequest, InvalidSignature, StaleMessage, UnknownSender
from shared.keys import PrivateKey
from tests.hostile.fuzzing import fuzz, json_values, run

TYPES: list[type] = sorted(
    {r.request for r in sub.ROUTES} | {r.reply for r in sub.ROUTES} | {t.event for t in sub.TOPICS} | {Error},
    key=lambda t: t.__name__)


def _field_names(t: type) -> list[str]:
    return [f.encode_name for f in msgspec.structs.fields(t)] or ["x"]


@st.composite
def near_messages(draw: st.DrawFn) -> tuple[type, bytes]:
    """A struct type and a body: raw bytes, any JSON, or an object with that struct's own members
    (so the decoder gets past the first member and into the fields' own checks)."""
    t = draw(st.sampled_from(TYPES))
    shaped = st.dictionaries(st.sampled_from(_field_names(t)), json_values, max_size=8).map(msgspec.json.encode)
    body = draw(st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: msgspec.json.encode(v)),
        shaped,
        st.text(max_size=60).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.builds(_corrupt, shaped, st.integers(min_value=0), st.binary(min_size=1, max_size=2)),
    ))
    return t, body


def _corrupt(body: bytes, at: int, junk: bytes) -> bytes:
    """One or two bytes of anything in a well-formed body (bad UTF-8 inside a string, say)."""
    at %= len(body) + 1
    return body[:at] + junk + body[at + len(junk):]


@fuzz(200)
@given(near_messages())
def test_decode_answers_only_with_invalid_request(case: tuple[type, bytes]) -> None:
    t, body = case
    try:
        decode(body, t)
    except InvalidRequest:
        pass


SIGNER = Signer("spiffe://fuzz.test/service/token", PrivateKey.generate())
REGISTRY = StaticRegistry([SenderKey(sender=SIGNER.sender, kind="service", key=SIGNER.key.public, subject_id="token")])
SUBJECT = "agentid.v1.t1.token.issue"
PAYLOAD = b'{"x":1}'
NAMES = [H.SENDER, H.KEY_ID, H.TIMESTAMP, H.MSG_ID, H.SIGNATURE, "traceparent", "Nats-Expected-Stream"]


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """A genuine envelope with some headers replaced, dropped or added, each by any text."""
    headers: dict[str, Any] = dict(sign(SIGNER, SUBJECT, PAYLOAD))
    for name in draw(st.lists(st.sampled_from(NAMES), max_size=4)):
        choice = draw(st.integers(0, 3))
        if choice == 0:
            headers.pop(name, None)
        elif choice == 1:
            headers[name] = draw(st.text(max_size=600))
        elif choice == 2:
            headers[name] = draw(st.sampled_from(["", "0", "-1", "99999999999999999", "1e3", " 1", "١٢٣",
                                                  b64u_encode(b"\x00" * 64), "%%%", SIGNER.key_id]))
        else:
            headers[name] = draw(st.integers().map(str))
    return headers


@fuzz(200)
@given(envelopes(), st.binary(max_size=40))
def test_authenticate_answers_only_with_its_typed_errors(headers: dict[str, Any], payload: bytes) -> None:
    try:
        run(authenticate(SUBJECT, headers, payload, REGISTRY))
    except (InvalidSignature, UnknownSender, StaleMessage):
        pass


def test_a_genuine_envelope_still_authenticates() -> None:
    verified = run(authenticate(SUBJECT, sign(SIGNER, SUBJECT, PAYLOAD), PAYLOAD, REGISTRY))
    assert verified.sender.sender == SIGNER.sender
    stale = sign(SIGNER, SUBJECT, PAYLOAD, ts_ms=int(time.time() * 1000) - 10 * 60_000)
    try:
        run(authenticate(SUBJECT, stale, PAYLOAD, REGISTRY))
    except StaleMessage:
        return
    raise AssertionError("a ten-minute-old message was accepted")


def test_bad_utf8_in_a_string_is_an_invalid_request() -> None:
    """Found by the hostile suite: msgspec raises UnicodeDecodeError (not DecodeError) for these."""
    for body in (b'{"agent_id": "\xff"}', b'{"\xff": 1}'):
        try:
            decode(body, sub.GET_AGENT.request)
        except InvalidRequest:
            continue
        raise AssertionError(f"{body!r} decoded")
