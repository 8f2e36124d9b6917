"""The signed NATS bus: every message names its sender and is signed by it.

- `signing`: the envelope (headers) and its signature.
- `registry`: who may send, with which key.
- `replay`: message ids already seen.
- `client`: `Bus`, the connection with signed publish, request and reply.
- `consumer` / `responder`: the loops a worker runs for JetStream events and requests.
"""

from shared.bus.client import Bus
from shared.bus.registry import CompositeRegistry, SenderKey, SenderRegistry, StaticRegistry
from shared.bus.signing import Signer

__all__ = ["Bus", "CompositeRegistry", "SenderKey", "SenderRegistry", "Signer", "StaticRegistry"]
