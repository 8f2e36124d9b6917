"""SEV-SNP-shaped reports and VCEKs under a test ARK/ASK (RSASSA-PSS, like AMD's)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from services.attestation.verifiers.sev_snp import ProductChain

from .common import FAR_AHEAD, LONG_AGO, make_cert

# -- AMD SEV-SNP -----------------------------------------------------------------------------

VCEK_OIDS = {
    "product": "1.3.6.1.4.1.3704.1.2",
    "bl": "1.3.6.1.4.1.3704.1.3.1",
    "tee": "1.3.6.1.4.1.3704.1.3.2",
    "snp": "1.3.6.1.4.1.3704.1.3.3",
    "ucode": "1.3.6.1.4.1.3704.1.3.8",
    "fmc": "1.3.6.1.4.1.3704.1.3.9",
    "hwid": "1.3.6.1.4.1.3704.1.4",
}


def _der_uint(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(body)]) + body


def _der_ia5(text: str) -> bytes:
    return bytes([0x16, len(text)]) + text.encode("ascii")


@dataclass(frozen=True)
class SnpPki:
    ark_key: rsa.RSAPrivateKey
    ark: x509.Certificate
    ask_key: rsa.RSAPrivateKey
    ask: x509.Certificate

    def chains(self, product: str = "Milan") -> dict[str, ProductChain]:
        return {product: ProductChain(self.ask, self.ark)}


@functools.lru_cache(maxsize=1)
def snp_pki() -> SnpPki:
    ark_key = rsa.generate_private_key(65537, 2048)
    ark = make_cert("ARK-Test", ark_key.public_key(), issuer=None, self_key=ark_key, ca=True, pss=True)
    ask_key = rsa.generate_private_key(65537, 2048)
    ask = make_cert("SEV-Test", ask_key.public_key(), issuer=(ark, ark_key), ca=True, path_length=0, pss=True)
    return SnpPki(ark_key, ark, ask_key, ask)


def tcb_raw(
    product: str = "Milan", *, bl: int = 3, tee: int = 0, snp: int = 8, ucode: int = 115, fmc: int = 0
) -> int:
    b = bytearray(8)
    if product == "Turin":
        b[0], b[1], b[2], b[3], b[7] = fmc, bl, tee, snp, ucode
    else:
        b[0], b[1], b[6], b[7] = bl, tee, snp, ucode
    return int.from_bytes(b, "little")


def make_vcek(
    pki: SnpPki | None = None,
    *,
    chip_id: bytes,
    tcb: Mapping[str, int],
    product_name: str = "Milan-B0",
    not_before: dt.datetime = LONG_AGO,
    not_after: dt.datetime = FAR_AHEAD,
    signer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
    pss: bool = True,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    pki = pki or snp_pki()
    key = ec.generate_private_key(ec.SECP384R1())
    exts: list[tuple[x509.ExtensionType, bool]] = [
        (
            x509.UnrecognizedExtension(x509.ObjectIdentifier(VCEK_OIDS["product"]), _der_ia5(product_name)),
            False,
        ),
        (x509.UnrecognizedExtension(x509.ObjectIdentifier(VCEK_OIDS["hwid"]), chip_id), False),
    ]
    for name, value in tcb.items():
        exts.append(
            (x509.UnrecognizedExtension(x509.ObjectIdentifier(VCEK_OIDS[name]), _der_uint(value)), False)
        )
    cert = make_cert(
        "SEV-VCEK",
        key.public_key(),
        issuer=signer or (pki.ask, pki.ask_key),
        ca=False,
        not_before=not_before,
        not_after=not_after,
        pss=pss,
        extensions=exts,
    )
    return key, cert


def snp_report(
    vcek_key: ec.EllipticCurvePrivateKey,
    *,
    chip_id: bytes,
    reported_tcb: int,
    measurement: bytes = b"\x5a" * 48,
    report_data: bytes = bytes(64),
    policy: int = 0x30000,
    vmpl: int = 0,
    version: int = 2,
    sig_algo: int = 1,
    flags: int = 0,
) -> bytes:
    r = bytearray(0x4A0)
    r[0x000:0x004] = version.to_bytes(4, "little")
    r[0x008:0x010] = policy.to_bytes(8, "little")
    r[0x030:0x034] = vmpl.to_bytes(4, "little")
    r[0x034:0x038] = sig_algo.to_bytes(4, "little")
    r[0x038:0x040] = reported_tcb.to_bytes(8, "little")
    r[0x048:0x04C] = flags.to_bytes(4, "little")
    r[0x050:0x090] = report_data
    r[0x090:0x0C0] = measurement
    r[0x180:0x188] = reported_tcb.to_bytes(8, "little")
    r[0x1A0:0x1E0] = chip_id
    r[0x1E0:0x1E8] = reported_tcb.to_bytes(8, "little")
    r[0x1F0:0x1F8] = reported_tcb.to_bytes(8, "little")
    sig_r, sig_s = decode_dss_signature(vcek_key.sign(bytes(r[:0x2A0]), ec.ECDSA(hashes.SHA384())))
    r[0x2A0:0x2E8] = sig_r.to_bytes(72, "little")
    r[0x2E8:0x330] = sig_s.to_bytes(72, "little")
    return bytes(r)
