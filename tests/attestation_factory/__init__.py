"""Build evidence of every supported kind with test keys and test roots.

Real samples prove that the verifiers accept what vendors produce; these builders prove that
each check refuses: they make Nitro-, SNP-, PSA-, EAR- and Sigstore-shaped evidence whose
every field the test chooses (nonce, user data, PCRs, TCB, chip id, lifecycle, identity, log
entry...), signed by keys the test owns and chaining to roots the test injects.
"""

from .common import FAR_AHEAD, LONG_AGO, UTC, b64u, der, ec_public_jwk, make_cert, pem, raw_ecdsa, thumbprint
from .nitro import GOOD_PCRS, NitroPki, make_nitro_pki, nitro_document, nitro_pki
from .rats import ear_claims, ear_jwt, psa_claims, psa_token
from .snp import SnpPki, make_vcek, snp_pki, snp_report, tcb_raw

__all__ = [
    "FAR_AHEAD",
    "GOOD_PCRS",
    "LONG_AGO",
    "UTC",
    "NitroPki",
    "SnpPki",
    "b64u",
    "der",
    "ear_claims",
    "ear_jwt",
    "ec_public_jwk",
    "make_cert",
    "make_nitro_pki",
    "make_vcek",
    "nitro_document",
    "nitro_pki",
    "pem",
    "psa_claims",
    "psa_token",
    "raw_ecdsa",
    "snp_pki",
    "snp_report",
    "tcb_raw",
    "thumbprint",
]
