"""AMD SEV-SNP ATTESTATION_REPORT layout (SEV-SNP ABI, Table "ATTESTATION_REPORT Structure").

0x4A0 bytes, little-endian. The signature covers bytes 0x000..0x29F; at 0x2A0 sit R and S as
72-byte little-endian integers, then reserved bytes up to 0x4A0, which must be zero (they are
not signed, so accepting anything there would let one report take many encodings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._codec import malformed

REPORT_SIZE = 0x4A0
SIGNED_END = 0x2A0
_SIG_COMPONENT = 72
_SIG_END = SIGNED_END + 2 * _SIG_COMPONENT
SUPPORTED_VERSIONS = frozenset({2, 3, 4, 5})
SIG_ALGO_ECDSA_P384_SHA384 = 1

POLICY_SMT = 1 << 16
POLICY_RESERVED_ONE = 1 << 17
POLICY_MIGRATE_MA = 1 << 18
POLICY_DEBUG = 1 << 19
POLICY_SINGLE_SOCKET = 1 << 20

SIGNING_KEY_VCEK = 0
SIGNING_KEY_VLEK = 1


def _u32(b: bytes, off: int) -> int:
    return int.from_bytes(b[off : off + 4], "little")


def _u64(b: bytes, off: int) -> int:
    return int.from_bytes(b[off : off + 8], "little")


@dataclass(frozen=True, slots=True)
class Tcb:
    """A TCB_VERSION. Byte positions differ by product (SPECS 13)."""

    raw: int
    bl: int
    tee: int
    snp: int
    ucode: int
    fmc: int | None

    @classmethod
    def decode(cls, raw: int, product: str) -> Tcb:
        b = raw.to_bytes(8, "little")
        if product == "Turin":
            return cls(raw, bl=b[1], tee=b[2], snp=b[3], ucode=b[7], fmc=b[0])
        return cls(raw, bl=b[0], tee=b[1], snp=b[6], ucode=b[7], fmc=None)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "raw": f"{self.raw:016x}",
            "bl": self.bl,
            "tee": self.tee,
            "snp": self.snp,
            "ucode": self.ucode,
        }
        if self.fmc is not None:
            out["fmc"] = self.fmc
        return out


@dataclass(frozen=True, slots=True)
class Report:
    raw: bytes
    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    sig_algo: int
    current_tcb: int
    platform_info: int
    flags: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: int
    chip_id: bytes
    committed_tcb: int
    current_fw: tuple[int, int, int]  # major, minor, build
    committed_fw: tuple[int, int, int]
    launch_tcb: int
    sig_r: int
    sig_s: int

    @property
    def signed_bytes(self) -> bytes:
        return self.raw[:SIGNED_END]

    @property
    def signing_key(self) -> int:
        return (self.flags >> 2) & 0x7

    @property
    def debug(self) -> bool:
        return bool(self.policy & POLICY_DEBUG)


def parse_report(raw: bytes) -> Report:
    if len(raw) != REPORT_SIZE:
        raise malformed(f"an SNP report is {REPORT_SIZE} bytes, not {len(raw)}")
    version = _u32(raw, 0x000)
    if version not in SUPPORTED_VERSIONS:
        raise malformed(f"SNP report version {version} is not supported")
    policy = _u64(raw, 0x008)
    if not policy & POLICY_RESERVED_ONE:
        raise malformed("SNP policy bit 17 must be one")
    if any(raw[_SIG_END:]):
        raise malformed("reserved bytes after the signature must be zero")
    return Report(
        raw=raw,
        version=version,
        guest_svn=_u32(raw, 0x004),
        policy=policy,
        family_id=raw[0x010:0x020],
        image_id=raw[0x020:0x030],
        vmpl=_u32(raw, 0x030),
        sig_algo=_u32(raw, 0x034),
        current_tcb=_u64(raw, 0x038),
        platform_info=_u64(raw, 0x040),
        flags=_u32(raw, 0x048),
        report_data=raw[0x050:0x090],
        measurement=raw[0x090:0x0C0],
        host_data=raw[0x0C0:0x0E0],
        id_key_digest=raw[0x0E0:0x110],
        author_key_digest=raw[0x110:0x140],
        report_id=raw[0x140:0x160],
        report_id_ma=raw[0x160:0x180],
        reported_tcb=_u64(raw, 0x180),
        chip_id=raw[0x1A0:0x1E0],
        committed_tcb=_u64(raw, 0x1E0),
        current_fw=(raw[0x1EA], raw[0x1E9], raw[0x1E8]),
        committed_fw=(raw[0x1EE], raw[0x1ED], raw[0x1EC]),
        launch_tcb=_u64(raw, 0x1F0),
        sig_r=int.from_bytes(raw[SIGNED_END : SIGNED_END + _SIG_COMPONENT], "little"),
        sig_s=int.from_bytes(raw[SIGNED_END + _SIG_COMPONENT : _SIG_END], "little"),
    )


def report_claims(report: Report, product: str) -> dict[str, Any]:
    def tcb(raw: int) -> dict[str, Any]:
        return Tcb.decode(raw, product).as_dict()

    return {
        "version": report.version,
        "product": product,
        "guest_svn": report.guest_svn,
        "policy": f"{report.policy:#x}",
        "policy_bits": {
            "abi_minor": report.policy & 0xFF,
            "abi_major": (report.policy >> 8) & 0xFF,
            "smt": bool(report.policy & POLICY_SMT),
            "migrate_ma": bool(report.policy & POLICY_MIGRATE_MA),
            "debug": report.debug,
            "single_socket": bool(report.policy & POLICY_SINGLE_SOCKET),
        },
        "family_id": report.family_id.hex(),
        "image_id": report.image_id.hex(),
        "vmpl": report.vmpl,
        "signature_algo": report.sig_algo,
        "platform_info": report.platform_info,
        "signing_key": {0: "vcek", 1: "vlek", 7: "none"}.get(report.signing_key, str(report.signing_key)),
        "report_data": report.report_data.hex(),
        "measurement": report.measurement.hex(),
        "host_data": report.host_data.hex(),
        "id_key_digest": report.id_key_digest.hex(),
        "author_key_digest": report.author_key_digest.hex(),
        "report_id": report.report_id.hex(),
        "report_id_ma": report.report_id_ma.hex(),
        "chip_id": report.chip_id.hex(),
        "current_tcb": tcb(report.current_tcb),
        "reported_tcb": tcb(report.reported_tcb),
        "committed_tcb": tcb(report.committed_tcb),
        "launch_tcb": tcb(report.launch_tcb),
        "current_firmware": "{}.{}.{}".format(*report.current_fw),
        "committed_firmware": "{}.{}.{}".format(*report.committed_fw),
    }
