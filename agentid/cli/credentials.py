"""Credentials: the tenant issuer, agent credentials and status lists."""

from __future__ import annotations

import argparse
import json
from typing import Any

from agentid.cli.base import Add, group
from agentid.cli.identity import _operator_request, _tenant
from shared.config import Settings


async def cmd_status_list(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import issuance as iss
    from contracts import subjects as sub
    from shared import jose, status_list

    record = await _operator_request(settings, sub.GET_STATUS_LIST, _tenant(args), iss.GetStatusList(list_id=args.list))
    if args.jwt:
        print(record.vc_jwt)
        return 0
    _, claims, _ = jose.split(record.vc_jwt)
    bits = status_list.decode(claims["credentialSubject"]["encodedList"])
    set_bits = [i for i in range(len(bits) * 8) if bits[i // 8] & (0x80 >> (i % 8))]
    print(json.dumps({"list_id": record.list_id, "url": record.url, "issuer": record.issuer,
                      "version": record.version, "entries": len(bits) * 8, "set": set_bits,
                      "vc_jwt": record.vc_jwt}, indent=2))
    return 0


async def cmd_issuer_show(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.operator import dump
    from contracts import issuance as iss
    from contracts import subjects as sub

    print(dump(await _operator_request(settings, sub.GET_ISSUER, _tenant(args), iss.GetIssuer())))
    return 0


async def cmd_issuer_rotate(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.operator import dump
    from contracts import issuance as iss
    from contracts import subjects as sub

    print(dump(await _operator_request(settings, sub.ROTATE_ISSUER_KEY, _tenant(args),
                                       iss.RotateIssuerKey(reason=args.reason))))
    return 0


async def cmd_credential_show(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.operator import dump
    from contracts import issuance as iss
    from contracts import subjects as sub

    print(dump(await _operator_request(settings, sub.GET_CREDENTIAL, _tenant(args), iss.GetCredential(agent_id=args.agent))))
    return 0


async def cmd_credential_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import issuance as iss
    from contracts import subjects as sub

    record = await _operator_request(settings, sub.REVOKE_CREDENTIAL, _tenant(args),
                                     iss.RevokeCredential(agent_id=args.agent, reason=args.reason))
    print(f"credential {record.credential_id} revoked: status index {record.status_index} of {record.status_list_credential}")
    return 0


def register(cmds: Any, add: Add) -> None:
    sl = add("status-list", cmd_status_list, "show a tenant's Bitstring Status List credential")
    sl.add_argument("--tenant")
    sl.add_argument("--list", help="list id (default: the list now taking new credentials)")
    sl.add_argument("--jwt", action="store_true", help="print only the vc+jwt")

    issuer = group(cmds, "issuer", "the tenant's credential issuer")
    ish = add("show", cmd_issuer_show, "issuer DID, DID document and keys", issuer)
    ish.add_argument("--tenant")
    ir = add("rotate", cmd_issuer_rotate, "rotate the issuer key (the old one keeps signing its status lists)", issuer)
    ir.add_argument("--tenant")
    ir.add_argument("--reason", default="scheduled rotation")

    cred = group(cmds, "credential", "agent credentials")
    cs = add("show", cmd_credential_show, "an agent's current credential", cred)
    cs.add_argument("agent")
    cs.add_argument("--tenant")
    cr = add("revoke", cmd_credential_revoke, "revoke an agent's credential (flip its status bit)", cred)
    cr.add_argument("agent")
    cr.add_argument("--tenant")
    cr.add_argument("--reason", default="revoked by operator")
