"""C2SP signed notes (c2sp.org/signed-note), with Ed25519 and tlog-cosignature/v1 signatures.

A note is UTF-8 text ending in a newline, a blank line, then signature lines
`— <name> <base64(key id[4] || signature)>`. Key ids are SHA-256(name || 0x0A || type || key)[:4]
and verifier keys are written `<name>+<hex8 key id>+<base64(type || key)>`.

Signature types supported (and nothing else, so a verifier key can never select a weaker one):
- 0x01 Ed25519 over the note text: the log's own signature.
- 0x04 timestamped Ed25519 witness cosignature (c2sp.org/tlog-cosignature): the signature is
  u64 big-endian timestamp || Ed25519 over "cosignature/v1\\ntime <t>\\n" || note text.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

__all__ = [
    "ALG_COSIGNATURE_V1",
    "ALG_ED25519",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "CosignatureSigner",
    "NoteError",
    "NoteSignature",
    "OpenedNote",
    "ParsedNote",
    "Signer",
    "Verifier",
    "add_signature",
    "cosignature_message",
    "cosignature_timestamp",
    "decode_std_base64",
    "key_id",
    "open_note",
    "parse_note",
    "parse_verifier_key",
    "sign",
    "valid_name",
    "verifier_key_string",
]  # `open` is left out so that a star import never shadows the builtin.

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100  # the spec requires accepting at least 16
MAX_TIMESTAMP = 2**63 - 1
_SIG_PREFIX = "\u2014 "  # em dash, space
_STD_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_HEX8 = re.compile(r"[0-9a-f]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # every ASCII control character except newline
PublicKeyLike = ed25519.Ed25519PublicKey | bytes  # a key object or its 32 raw bytes


class NoteError(ValueError):
    """A note, signature or verifier key was refused. `reason` is a stable code."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason


def decode_std_base64(text: str) -> bytes:
    """Standard padded base64 (RFC 4648 section 4), refusing any other spelling of the bytes."""
    if not isinstance(text, str) or not _STD_B64.fullmatch(text):
        raise NoteError("bad_base64", "not standard padded base64")
    raw = base64.b64decode(text, validate=True)  # cannot fail once the pattern matched
    # Unused trailing bits must be zero, so one value has exactly one encoding.
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError("bad_base64", "non-canonical base64")
    return raw


def valid_name(name: object) -> bool:
    """Key names are non-empty and contain no Unicode space, no '+' and no control character."""
    return (
        isinstance(name, str)
        and name != ""
        and "+" not in name
        and not any(ch.isspace() for ch in name)
        and not _CONTROL.search(name)
    )


def key_id(name: str, alg: int, public_key: bytes) -> int:
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def cosignature_message(text: bytes, timestamp: int) -> bytes:
    """What a tlog-cosignature/v1 Ed25519 cosigner signs (header and time lines, then the text)."""
    return b"cosignature/v1\ntime %d\n" % timestamp + text


def _raw_public(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class Verifier:
    """A trusted key: name, signature type and Ed25519 public key; its key id is derived."""

    def __init__(self, name: str, public_key: PublicKeyLike, alg: int = ALG_ED25519) -> None:
        if not valid_name(name):
            raise NoteError("bad_name", "key names are non-empty, without spaces or '+'")
        if alg not in (ALG_ED25519, ALG_COSIGNATURE_V1):
            raise NoteError("unsupported_alg", f"signature type {alg:#04x}")
        if isinstance(public_key, bytes):
            if len(public_key) != 32:
                raise NoteError("bad_key", "an Ed25519 public key is 32 bytes")
            public_key = ed25519.Ed25519PublicKey.from_public_bytes(public_key)
        if not isinstance(public_key, ed25519.Ed25519PublicKey):
            raise NoteError("bad_key", "only Ed25519 keys are supported")
        self.name = name
        self.alg = alg
        self.public_key = public_key
        self.public_bytes = _raw_public(public_key)
        self.key_id = key_id(name, alg, self.public_bytes)

    def key_string(self) -> str:
        encoded = base64.b64encode(bytes([self.alg]) + self.public_bytes).decode("ascii")
        return f"{self.name}+{self.key_id:08x}+{encoded}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Check the signature bytes that follow the key id in a signature line."""
        if self.alg == ALG_COSIGNATURE_V1:
            if len(signature) != 8 + 64:
                return False
            timestamp = int.from_bytes(signature[:8], "big")
            if timestamp > MAX_TIMESTAMP:
                return False
            message, signature = cosignature_message(text, timestamp), signature[8:]
        else:
            if len(signature) != 64:
                return False
            message = text
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"Verifier({self.key_string()!r})"


def verifier_key_string(name: str, public_key: PublicKeyLike, alg: int = ALG_ED25519) -> str:
    return Verifier(name, public_key, alg).key_string()


def parse_verifier_key(vkey: str) -> Verifier:
    """Parse `name+hex8+base64(type || key)`, checking the key id against the key."""
    if not isinstance(vkey, str):
        raise NoteError("bad_verifier_key", "not a string")
    # Names hold no '+', but standard base64 may: only the first two '+' separate fields.
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise NoteError("bad_verifier_key", "expected name+keyid+key")
    name, hex_id, encoded = parts
    if not _HEX8.fullmatch(hex_id):
        raise NoteError("bad_verifier_key", "key id is not 8 lowercase hex digits")
    raw = decode_std_base64(encoded)
    if len(raw) != 33:
        raise NoteError("bad_verifier_key", "expected a type byte and a 32-byte Ed25519 key")
    verifier = Verifier(name, raw[1:], raw[0])
    if verifier.key_id != int(hex_id, 16):
        raise NoteError("bad_verifier_key", "key id does not match the key")
    return verifier


class Signer:
    """Signs note text with Ed25519 (signature type 0x01)."""

    alg = ALG_ED25519

    def __init__(self, name: str, private_key: ed25519.Ed25519PrivateKey) -> None:
        if not isinstance(private_key, ed25519.Ed25519PrivateKey):
            raise NoteError("bad_key", "only Ed25519 keys are supported")
        self._private_key = private_key
        self._verifier = Verifier(name, private_key.public_key(), self.alg)
        self.name = name
        self.key_id = self._verifier.key_id

    def verifier(self) -> Verifier:
        return self._verifier

    def verifier_key_string(self) -> str:
        return self._verifier.key_string()

    def signature(self, text: bytes) -> bytes:
        return self._private_key.sign(text)


class CosignatureSigner(Signer):
    """A witness: timestamped Ed25519 cosignatures (c2sp.org/tlog-cosignature, type 0x04).

    The v1 message does not name the cosigner, so one key must serve one cosigner only.
    """

    alg = ALG_COSIGNATURE_V1

    def __init__(
        self, name: str, private_key: ed25519.Ed25519PrivateKey, clock: Callable[[], int] | None = None
    ) -> None:
        super().__init__(name, private_key)
        self._clock = clock or (lambda: int(time.time()))

    def signature(self, text: bytes) -> bytes:
        timestamp = self._clock()
        if type(timestamp) is not int or not 0 <= timestamp <= MAX_TIMESTAMP:
            raise NoteError("bad_timestamp", "cosignature time must be in [0, 2**63)")
        return timestamp.to_bytes(8, "big") + self._private_key.sign(cosignature_message(text, timestamp))


class NoteSignature(NamedTuple):
    name: str
    key_id: int
    signature: bytes  # what follows the key id
    line: str


class ParsedNote(NamedTuple):
    """A syntactically valid note. Nothing in it is verified: use `open_note` for that."""

    text: str
    signatures: list[NoteSignature]


class OpenedNote(NamedTuple):
    text: str
    signers: list[str]  # names of the trusted keys whose signatures verified, in note order


def _check_text(text: str) -> bytes:
    if not isinstance(text, str):
        raise NoteError("bad_text", "note text must be a string")
    if not text.endswith("\n"):
        raise NoteError("bad_text", "note text must end with a newline")
    if _CONTROL.search(text):
        raise NoteError("bad_text", "control characters other than newline")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NoteError("bad_text", "not valid UTF-8") from exc


def parse_note(note: str | bytes) -> ParsedNote:
    if isinstance(note, str):
        try:
            note = note.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise NoteError("malformed", "not valid UTF-8") from exc
    if not isinstance(note, bytes):
        raise NoteError("malformed", "a note is text")
    if len(note) > MAX_NOTE_BYTES:
        raise NoteError("too_large", f"over {MAX_NOTE_BYTES} bytes")
    try:
        decoded = note.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteError("malformed", "not valid UTF-8") from exc
    if _CONTROL.search(decoded):
        raise NoteError("malformed", "control characters other than newline")
    # The text may contain blank lines: the signatures start after the last one.
    split = decoded.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed", "no blank line before the signatures")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    if not block or not block.endswith("\n"):
        raise NoteError("malformed", "the signature block must end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError("too_many_signatures", f"more than {MAX_SIGNATURES}")
    signatures = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise NoteError("malformed", "a signature line starts with an em dash and a space")
        name, _, encoded = line[len(_SIG_PREFIX) :].partition(" ")
        if not valid_name(name):
            raise NoteError("malformed", "bad key name in a signature line")
        try:
            raw = decode_std_base64(encoded)
        except NoteError as exc:
            raise NoteError("malformed", "a signature is standard padded base64") from exc
        if len(raw) < 5:
            raise NoteError("malformed", "a signature is a key id and at least one byte")
        signatures.append(NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:], line))
    return ParsedNote(text, signatures)


def _index(verifiers: Iterable[Verifier]) -> dict[tuple[str, int], Verifier]:
    known: dict[tuple[str, int], Verifier] = {}
    for verifier in verifiers:
        if not isinstance(verifier, Verifier):
            raise NoteError("bad_verifier", "verifiers must be Verifier objects")
        slot = (verifier.name, verifier.key_id)
        other = known.setdefault(slot, verifier)
        if other.public_bytes != verifier.public_bytes or other.alg != verifier.alg:
            # Two trusted keys answering to one name and id: refuse rather than pick one.
            raise NoteError("ambiguous_verifiers", f"{verifier.name}+{verifier.key_id:08x}")
    return known


def open_note(note: str | bytes, verifiers: Iterable[Verifier]) -> OpenedNote:
    """Verify a note against trusted keys and return its text and the names that verified.

    Signatures by unknown keys (name and id not both matching a trusted key) are ignored; a
    trusted key's bad signature refuses the whole note; so does the absence of any good one.
    """
    known = _index(verifiers)
    parsed = parse_note(note)
    text = parsed.text.encode("utf-8")
    signers: list[str] = []
    for sig in parsed.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if not verifier.verify(text, sig.signature):
            raise NoteError("bad_signature", f"{sig.name}+{sig.key_id:08x}")
        if sig.name not in signers:
            signers.append(sig.name)
    if not signers:
        raise NoteError("no_trusted_signature", "no signature from a trusted key")
    return OpenedNote(parsed.text, signers)


def _line(signer: Signer, text: bytes) -> str:
    if not isinstance(signer, Signer):
        raise NoteError("bad_signer", "signers must be Signer objects")
    raw = signer.key_id.to_bytes(4, "big") + signer.signature(text)
    return f"{_SIG_PREFIX}{signer.name} {base64.b64encode(raw).decode('ascii')}"


def _assemble(text: str, lines: list[str]) -> str:
    if len(lines) > MAX_SIGNATURES:
        raise NoteError("too_many_signatures", f"more than {MAX_SIGNATURES}")
    note = text + "\n" + "".join(line + "\n" for line in lines)
    if len(note.encode("utf-8")) > MAX_NOTE_BYTES:
        raise NoteError("too_large", f"over {MAX_NOTE_BYTES} bytes")
    return note


def sign(text: str, signer: Signer, *more: Signer) -> str:
    raw = _check_text(text)
    return _assemble(text, [_line(s, raw) for s in (signer, *more)])


def add_signature(note: str | bytes, signer: Signer, verifiers: Iterable[Verifier]) -> str:
    """Co-sign a note after checking it: the existing note must verify under `verifiers`.

    A previous signature by the same key (name and id) is replaced, never duplicated.
    """
    text = open_note(note, verifiers).text
    line = _line(signer, text.encode("utf-8"))
    own = (signer.name, signer.key_id)
    kept = [s.line for s in parse_note(note).signatures if (s.name, s.key_id) != own]
    return _assemble(text, [*kept, line])


def cosignature_timestamp(signature: NoteSignature) -> int:
    """The time in a cosignature/v1 signature. Read it only from a signature that verified."""
    if len(signature.signature) != 8 + 64:
        raise NoteError("malformed", "not a cosignature/v1 signature")
    return int.from_bytes(signature.signature[:8], "big")


# The verb the Go note API uses, as `signed_note.open(...)`; not exported by a star import.
open = open_note  # noqa: A001
