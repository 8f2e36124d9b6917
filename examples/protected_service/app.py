"""A ledger that only agents with a DPoP-bound agentid token, and the right details, may use.

    GET  /accounts/{id}   needs `read` on https://ledger.example/accounts/{id}
    POST /payments        needs `pay` on https://ledger.example/payments, for at most the
                          token's `amount` caveat (`{"to": "...", "amount": {"value": "10.00",
                          "currency": "EUR"}}`)

`create_app(verifier_factory, base_url=...)` builds the Starlette app; `serve(make_app)` runs it
with uvicorn on 127.0.0.1 and a free port, for tests and demos.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agentid.middleware import SCOPE_KEY, AgentidMiddleware, Rule
from agentid.verifier import VerifiedRequest, Verifier

RESOURCE = "https://ledger.example"
DETAIL_TYPE = "ledger"
MAX_BODY_BYTES = 4096

RULES = (
    Rule("GET", "/accounts/{id}", "read", f"{RESOURCE}/accounts/{{id}}"),
    # The amount caveat depends on the body: the middleware checks the credentials, the handler
    # checks the operation with `require` (action None means exactly that).
    Rule("POST", "/payments", None),
)

VerifierFactory = Callable[[], Verifier | Awaitable[Verifier]]


def create_app(verifier_factory: VerifierFactory, *, base_url: str,
               authorization_servers: Sequence[str] = ()) -> Starlette:
    """The ledger, verifying with the `Verifier` that `verifier_factory` makes at start-up.

    `base_url` is the URL clients use to reach this app (what their proofs' `htu` name).
    """
    accounts: dict[str, dict[str, Any]] = {
        "42": {"id": "42", "owner": "alice", "balance": {"value": "120.00", "currency": "EUR"}},
        "43": {"id": "43", "owner": "bob", "balance": {"value": "15.50", "currency": "EUR"}},
    }
    payments: list[dict[str, Any]] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        made = verifier_factory()
        verifier = await made if inspect.isawaitable(made) else made
        app.state.verifier = verifier
        try:
            yield
        finally:
            await verifier.aclose()

    async def get_account(request: Request) -> JSONResponse:
        who: VerifiedRequest = request.scope[SCOPE_KEY]
        account = accounts.get(request.path_params["id"])
        if account is None:
            return JSONResponse({"error": "not_found"}, status_code=404)
        return JSONResponse({**account, "read_by": who.agent_spiffe_id})

    async def pay(request: Request) -> JSONResponse:
        who: VerifiedRequest = request.scope[SCOPE_KEY]
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"error": "invalid_request"}, status_code=413)
        try:
            payment = await request.json()
            to, amount = payment["to"], payment["amount"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        # The caveat depends on the body, so the handler checks it; a refusal raised here is
        # answered by the middleware (403 insufficient_scope with its challenge).
        who.require("pay", f"{RESOURCE}/payments", amount=amount)
        record = {"to": str(to), "amount": amount, "by": who.agent_spiffe_id, "on_behalf_of": who.subject,
                  "token": who.jti}
        payments.append(record)
        return JSONResponse(record, status_code=201)

    app = Starlette(routes=[Route("/accounts/{id}", get_account, methods=["GET"]),
                            Route("/payments", pay, methods=["POST"])], lifespan=lifespan)
    app.add_middleware(
        AgentidMiddleware, verifier=lambda: app.state.verifier, base_url=base_url, rules=RULES,
        authorization_servers=list(authorization_servers), authorization_details_types=[DETAIL_TYPE],
        resource_name="Example ledger")
    app.state.payments = payments
    return app


class _Started:
    """Wraps an ASGI app to signal when its lifespan start-up has completed (or failed)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def watch(message: Any) -> None:
            await send(message)
            if message["type"] in ("lifespan.startup.complete", "lifespan.startup.failed") and not self.done.done():
                self.done.set_result(message["type"] == "lifespan.startup.complete")

        await self.app(scope, receive, watch)


@asynccontextmanager
async def serve(make_app: Callable[[str], Any], *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Run `make_app(base_url)` with uvicorn on `host` and a free port; yields the base URL once
    the app has started. The socket is bound and listening before the app exists, so the URL is
    known to the app (its `htu`) and no connection is refused while uvicorn starts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    base_url = f"http://{host}:{sock.getsockname()[1]}"
    app = _Started(make_app(base_url))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        waiting: set[asyncio.Future[Any]] = {task, app.done}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not app.done.done() or not app.done.result():
            raise RuntimeError("the service did not start")
        yield base_url
    finally:
        server.should_exit = True
        await task
        sock.close()
