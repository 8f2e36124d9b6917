"""C2SP signed notes: the SPECS and Go vectors, witness cosignatures, and every refusal."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import signed_note as sn
from shared.signed_note import CosignatureSigner, NoteError, Signer, Verifier

SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
PUB = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
NAME = "example.com/log42"
TEXT = "example.com/log42\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"
SIG_LINE = (
    "\u2014 example.com/log42 HMlJKvHR7vPG8wIjOj8iBv9cMBSXcLFm5a/ZKq4+szRgZFq+2qaCg87zGDtzFISS2bInneIN8AQ1"
    "HL7GV53gLYV5dww=\n"
)
NOTE = TEXT + "\n" + SIG_LINE


def _key(tag: bytes) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(tag.ljust(32, b"\x00"))


LOG = Signer(NAME, ed25519.Ed25519PrivateKey.from_private_bytes(SEED))
WITNESS = CosignatureSigner("witness.example/w1", _key(b"witness"), clock=lambda: 1_700_000_000)
OTHER = Signer("other.example/log", _key(b"other"))


def _refused(reason: str, fn, *args) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NoteError) as info:
        fn(*args)
    assert info.value.reason == reason, info.value


# ---- vectors -------------------------------------------------------------------------------


def test_specs_vector_key_id_verifier_key_and_exact_note() -> None:
    assert LOG.verifier().public_bytes == PUB
    assert LOG.key_id == 0x1CC9492A
    vkey = LOG.verifier_key_string()
    assert vkey == "example.com/log42+1cc9492a+" + base64.b64encode(b"\x01" + PUB).decode()
    assert sn.verifier_key_string(NAME, PUB) == vkey
    assert sn.sign(TEXT, LOG) == NOTE
    assert sn.open(NOTE, [sn.parse_verifier_key(vkey)]) == (TEXT, [NAME])


def test_go_sumdb_note_documented_example() -> None:
    # The example in golang.org/x/mod/sumdb/note, produced by that implementation.
    vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    text = (
        "If you think cryptography is the answer to your problem,\n"
        "then you don't know what your problem is.\n"
    )
    note = (
        text
        + "\n\u2014 PeterNeumann "
        + "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    )
    assert sn.open_note(note, [sn.parse_verifier_key(vkey)]) == (text, ["PeterNeumann"])
    assert sn.parse_verifier_key(vkey).key_string() == vkey


def test_cosignature_spec_example_carries_its_time() -> None:
    # c2sp.org/tlog-cosignature: the example witness line signs the message with "time 1679315147".
    note = (
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
        "\u2014 example.com/behind-the-sofa "
        "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
        "\u2014 witness.example.com/w1 "
        "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin"
        "1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
    )
    witness_sig = sn.parse_note(note).signatures[1]
    assert witness_sig.name == "witness.example.com/w1" and witness_sig.key_id == 0x8D66CF3F
    assert sn.cosignature_timestamp(witness_sig) == 1679315147


# ---- witness cosignatures ------------------------------------------------------------------


def test_cosignature_signs_the_v1_message_and_opens() -> None:
    cosigned = sn.add_signature(NOTE, WITNESS, [LOG.verifier()])
    assert cosigned.startswith(NOTE)  # the log's line is kept as it was
    sig = sn.parse_note(cosigned).signatures[1]
    assert sig.key_id == sn.key_id(WITNESS.name, 0x04, WITNESS.verifier().public_bytes)
    assert sn.cosignature_timestamp(sig) == 1_700_000_000
    message = b"cosignature/v1\ntime 1700000000\n" + TEXT.encode()
    WITNESS.verifier().public_key.verify(sig.signature[8:], message)  # raises if not exactly this
    assert sn.open(cosigned, [LOG.verifier(), WITNESS.verifier()]) == (TEXT, [NAME, WITNESS.name])
    assert sn.open(cosigned, [WITNESS.verifier()]).signers == [WITNESS.name]
    vkey = WITNESS.verifier_key_string()
    assert base64.b64decode(vkey.split("+")[2])[0] == 0x04
    assert sn.parse_verifier_key(vkey).alg == sn.ALG_COSIGNATURE_V1


def test_cosignature_refusals() -> None:
    cosigned = sn.add_signature(NOTE, WITNESS, [LOG.verifier()])
    line = sn.parse_note(cosigned).signatures[1]
    raw = bytearray(line.key_id.to_bytes(4, "big") + line.signature)
    raw[11] ^= 1  # change the timestamp: the signature no longer covers it
    tampered = NOTE + f"\u2014 {WITNESS.name} {base64.b64encode(bytes(raw)).decode()}\n"
    _refused("bad_signature", sn.open, tampered, [WITNESS.verifier()])
    # The same key as a plain Ed25519 verifier has another key id, so the line is not its own.
    plain = Verifier(WITNESS.name, WITNESS.verifier().public_key)
    _refused("no_trusted_signature", sn.open, cosigned.replace(SIG_LINE, ""), [plain])
    # A timestamp above 2**63 - 1 is refused even with a valid signature over it.
    late = CosignatureSigner("w.example/late", _key(b"late"), clock=lambda: 2**63)
    _refused("bad_timestamp", sn.sign, TEXT, late)
    assert not late.verifier().verify(TEXT.encode(), (2**63).to_bytes(8, "big") + b"\x00" * 64)


def test_add_signature_checks_the_note_first_and_replaces_its_own_line() -> None:
    _refused("bad_signer", sn.add_signature, NOTE, LOG.verifier(), [LOG.verifier()])
    _refused("no_trusted_signature", sn.add_signature, NOTE, WITNESS, [OTHER.verifier()])
    _refused("bad_signature", sn.add_signature, NOTE.replace("\n8\n", "\n9\n"), WITNESS, [LOG.verifier()])
    once = sn.add_signature(NOTE, WITNESS, [LOG.verifier()])
    later = CosignatureSigner(WITNESS.name, _key(b"witness"), clock=lambda: 1_700_000_500)
    twice = sn.add_signature(once, later, [LOG.verifier()])
    sigs = sn.parse_note(twice).signatures
    assert len(sigs) == 2 and sn.cosignature_timestamp(sigs[1]) == 1_700_000_500


# ---- opening: which signatures count -------------------------------------------------------


def test_unknown_signers_are_ignored_and_all_trusted_ones_reported() -> None:
    note = sn.sign(TEXT, OTHER, LOG)
    assert sn.open(note, [LOG.verifier()]) == (TEXT, [NAME])
    assert sn.open(note, [LOG.verifier(), OTHER.verifier()]).signers == [OTHER.name, NAME]


def test_tampered_text_is_refused() -> None:
    _refused("bad_signature", sn.open, NOTE.replace("\n8\n", "\n9\n"), [LOG.verifier()])
    _refused("bad_signature", sn.open, "x" + NOTE, [LOG.verifier()])


def test_a_different_key_with_the_same_name_does_not_verify() -> None:
    impostor = Signer(NAME, _key(b"impostor"))
    # Its signature carries another key id: ignored, and then nothing trusted verified.
    _refused("no_trusted_signature", sn.open, sn.sign(TEXT, impostor), [LOG.verifier()])
    # Trusting the impostor's key does not make the real log's signature verify either.
    _refused("no_trusted_signature", sn.open, NOTE, [impostor.verifier()])
    # A key whose id collides with the trusted one is caught by the signature check itself.
    collision = _line_note(LOG.key_id, impostor.signature(TEXT.encode()))
    _refused("bad_signature", sn.open, collision, [LOG.verifier()])


def _line_note(key_id: int, signature: bytes, name: str = NAME) -> str:
    return TEXT + "\n" + f"\u2014 {name} {base64.b64encode(key_id.to_bytes(4, 'big') + signature).decode()}\n"


def test_a_trusted_keys_bad_signature_refuses_the_whole_note() -> None:
    good_other = sn.sign(TEXT, OTHER).split("\n\n")[1]
    signature = bytearray(LOG.signature(TEXT.encode()))
    signature[10] ^= 1
    bad_log = _line_note(LOG.key_id, bytes(signature)).split("\n\n")[1]
    _refused("bad_signature", sn.open, TEXT + "\n" + good_other + bad_log, [LOG.verifier(), OTHER.verifier()])
    truncated = _line_note(LOG.key_id, LOG.signature(TEXT.encode())[:63])
    _refused("bad_signature", sn.open, truncated, [LOG.verifier()])


def test_only_unknown_signers_is_refused() -> None:
    _refused("no_trusted_signature", sn.open, sn.sign(TEXT, OTHER), [LOG.verifier()])
    _refused("no_trusted_signature", sn.open, NOTE, [])


def test_ambiguous_verifiers_are_refused() -> None:
    twin = Verifier(NAME, LOG.verifier().public_key)
    assert sn.open(NOTE, [LOG.verifier(), twin]).signers == [NAME]  # the same key twice is fine
    clash = Verifier(NAME, _key(b"clash").public_key())
    clash.key_id = LOG.key_id  # simulate a colliding key id
    _refused("ambiguous_verifiers", sn.open, NOTE, [LOG.verifier(), clash])
    _refused("bad_verifier", sn.open, NOTE, [LOG.verifier().key_string()])


# ---- malformed notes -----------------------------------------------------------------------

B64 = SIG_LINE.split(" ")[2].rstrip("\n")


@pytest.mark.parametrize(
    "note",
    [
        TEXT + "\n" + SIG_LINE.rstrip("\n"),  # missing final newline
        TEXT + SIG_LINE,  # no blank line
        TEXT + "\n" + SIG_LINE.replace("\u2014", "-"),  # hyphen instead of em dash
        TEXT + "\n" + SIG_LINE.replace("\u2014", "\u2013"),  # en dash
        TEXT + "\n" + SIG_LINE.replace("\u2014 ", "\u2014"),  # no space after the dash
        TEXT + "\n" + SIG_LINE.replace(NAME + " ", NAME + "  "),  # double space
        TEXT + "\n" + f"\u2014 {NAME}\n",  # no signature
        TEXT + "\n" + f"\u2014 {NAME} {B64.rstrip('=')}\n",  # padding missing
        TEXT + "\n" + f"\u2014 {NAME} {B64.replace('+', '-')}\n",  # URL-safe alphabet
        TEXT + "\n" + f"\u2014 {NAME} {B64[:-2]}x=\n",  # non-canonical trailing bits
        TEXT + "\n" + f"\u2014 {NAME} AAAAAA==\n",  # key id and nothing more
        TEXT + "\n" + f"\u2014 a+b {B64}\n",  # '+' in the name
        TEXT + "\n" + f"\u2014  {B64}\n",  # empty name
        TEXT + "\n" + SIG_LINE + "\n",  # a blank line after the signatures
        TEXT.replace("8", "8\t") + "\n" + SIG_LINE,  # control character in the text
        TEXT + "\n" + SIG_LINE.replace(NAME, NAME + "\u00a0x"),  # Unicode space in the name
        TEXT + "\n" + f"\u2014 {NAME} {B64[:-1]}*\n",  # not base64 at all
    ],
)
def test_malformed_notes_are_refused(note: str) -> None:
    _refused("malformed", sn.open, note, [LOG.verifier()])


def test_invalid_utf8_and_oversized_notes_are_refused() -> None:
    _refused("malformed", sn.open, NOTE.encode() + b"\xff", [LOG.verifier()])
    _refused("malformed", sn.open, TEXT + "\ud800\n\n" + SIG_LINE, [LOG.verifier()])
    huge = "x" * sn.MAX_NOTE_BYTES + "\n"
    _refused("too_large", sn.open, huge + "\n" + SIG_LINE, [LOG.verifier()])
    _refused("too_large", sn.sign, huge, LOG)


def test_signature_count_is_capped_but_sixteen_are_accepted() -> None:
    unknown = sn.sign(TEXT, OTHER).split("\n\n")[1]
    assert sn.open(TEXT + "\n" + unknown * 15 + SIG_LINE, [LOG.verifier()]).signers == [NAME]
    assert sn.open(TEXT + "\n" + unknown * 99 + SIG_LINE, [LOG.verifier()]).signers == [NAME]
    _refused("too_many_signatures", sn.open, TEXT + "\n" + unknown * 100 + SIG_LINE, [LOG.verifier()])
    _refused("too_many_signatures", sn.sign, TEXT, *[LOG] * 101)


def test_signing_refuses_bad_text_and_signers() -> None:
    _refused("bad_text", sn.sign, TEXT.rstrip("\n"), LOG)
    _refused("bad_text", sn.sign, TEXT + "\x00\n", LOG)
    _refused("bad_text", sn.sign, TEXT.encode(), LOG)
    _refused("bad_signer", sn.sign, TEXT, LOG.verifier())
    _refused("bad_name", Signer, "has space", _key(b"k"))
    _refused("bad_name", Signer, "a+b", _key(b"k"))
    _refused("bad_name", Signer, "", _key(b"k"))
    _refused("bad_key", Signer, NAME, "not a key")
    _refused("bad_text", sn.sign, "lone \ud800 surrogate\n", LOG)


def test_verifier_construction_refusals() -> None:
    _refused("bad_key", Verifier, NAME, PUB[:31])
    _refused("bad_key", Verifier, NAME, "not a key")
    _refused("bad_name", Verifier, "a b", PUB)
    _refused("unsupported_alg", Verifier, NAME, PUB, 0x02)
    assert "1cc9492a" in repr(Verifier(NAME, PUB))


def test_signatures_of_the_wrong_length_do_not_verify() -> None:
    text = TEXT.encode()
    assert LOG.verifier().verify(text, LOG.signature(text))
    assert not LOG.verifier().verify(text, LOG.signature(text) + b"\x00")
    cosig = WITNESS.signature(text)
    assert WITNESS.verifier().verify(text, cosig)
    assert not WITNESS.verifier().verify(text, cosig[:-1])
    assert not WITNESS.verifier().verify(text, cosig[8:])
    _refused("malformed", sn.cosignature_timestamp, sn.parse_note(NOTE).signatures[0])
    _refused("malformed", sn.parse_note, 12345)


# ---- verifier keys -------------------------------------------------------------------------

VKEY = LOG.verifier_key_string()


@pytest.mark.parametrize(
    ("vkey", "reason"),
    [
        ("example.com/log42+1cc9492a", "bad_verifier_key"),  # two parts
        (VKEY + "+extra", "bad_base64"),  # a fourth field lands in the key
        (VKEY.replace("1cc9492a", "1CC9492A"), "bad_verifier_key"),  # uppercase id
        (VKEY.replace("1cc9492a", "1cc9492"), "bad_verifier_key"),  # seven digits
        (VKEY.replace("1cc9492a", "1cc9492b"), "bad_verifier_key"),  # wrong key id
        (VKEY.replace(NAME, "example.com/log43"), "bad_verifier_key"),  # id of another name
        (VKEY[:-1], "bad_base64"),  # truncated base64
        (VKEY[::-1].replace("+", "-", 1)[::-1], "bad_base64"),  # URL-safe alphabet in the key
        (f"{NAME}+1cc9492a+" + base64.b64encode(b"\x01" + PUB[:31]).decode(), "bad_verifier_key"),
        (f"{NAME}+1cc9492a+" + base64.b64encode(b"\x02" + PUB).decode(), "unsupported_alg"),
        (f"with space+1cc9492a+" + base64.b64encode(b"\x01" + PUB).decode(), "bad_name"),
        (f"+1cc9492a+" + base64.b64encode(b"\x01" + PUB).decode(), "bad_name"),
        (None, "bad_verifier_key"),
    ],
)
def test_bad_verifier_keys_are_refused(vkey: str, reason: str) -> None:
    _refused(reason, sn.parse_verifier_key, vkey)


def test_verifier_key_round_trip() -> None:
    parsed = sn.parse_verifier_key(VKEY)
    assert (parsed.name, parsed.key_id, parsed.public_bytes, parsed.alg) == (NAME, LOG.key_id, PUB, 1)
    assert parsed.key_string() == VKEY


# ---- round trip ----------------------------------------------------------------------------

line_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\n"), max_size=40
)


@settings(max_examples=100, deadline=None)
@given(st.lists(line_text, min_size=1, max_size=6))
def test_any_valid_text_round_trips_including_blank_lines(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    note = sn.add_signature(sn.sign(text, LOG), WITNESS, [LOG.verifier()])
    assert sn.open(note, [LOG.verifier(), WITNESS.verifier()]) == (text, [NAME, WITNESS.name])
