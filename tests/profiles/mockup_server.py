"""A small static Redfish server over a mockup tree, for developing and testing the profile engine over HTTP
without the simulator (tests prefer the simulator's mockup mode when it is installed).

GET serves ``<uri>/index.json`` (exact, then case-insensitive); POST to the session collection creates a session
(any credentials) and answers ``X-Auth-Token`` and ``Location``; DELETE of a session answers 204. One server can
serve many mockups at once, one per listening address (``serve_many``) — the benchmark's fleet of BMCs.

Run by hand: ``python tests/profiles/mockup_server.py MOCKUP_DIR [PORT]``.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path

from aiohttp import web

from redfleet.profiles.source import MockupSource

_tokens = itertools.count(1)


def make_app(mockup: Path, allow: str | None = None) -> web.Application:
    source = MockupSource(mockup)
    cache: dict[str, bytes | None] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        if request.method == "POST" and path.rstrip("/").lower().endswith("/sessionservice/sessions"):
            token = f"tok{next(_tokens)}"
            sid = token
            location = f"/redfish/v1/SessionService/Sessions/{sid}"
            body = {
                "@odata.id": location,
                "@odata.type": "#Session.v1_0_0.Session",
                "Id": sid,
                "Name": "Session",
                "UserName": "user",
            }
            return web.json_response(body, status=201, headers={"X-Auth-Token": token, "Location": location})
        if request.method == "DELETE":
            return web.Response(status=204)
        if request.method != "GET":
            return web.Response(status=405)
        key = path.rstrip("/") or "/"
        if key not in cache:
            file = source._resolve(key)
            cache[key] = file.read_bytes() if file is not None else None
        data = cache[key]
        if data is None:
            return web.json_response({"error": {"code": "Base.1.0.ResourceMissingAtURI", "message": path}}, status=404)
        headers = {"Content-Type": "application/json", "OData-Version": "4.0"}
        if allow:
            headers["Allow"] = allow
        return web.Response(body=data, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def start(mockup: Path, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(make_app(mockup), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = site._server.sockets  # type: ignore[union-attr]
    real_port = sockets[0].getsockname()[1]
    return runner, f"http://{host}:{real_port}"


async def serve_many(mockup: Path, hosts: list[str], port: int) -> web.AppRunner:
    """One app, many listening addresses (one per simulated BMC)."""
    runner = web.AppRunner(make_app(mockup), access_log=None)
    await runner.setup()
    for host in hosts:
        await web.TCPSite(runner, host, port).start()
    return runner


def main() -> None:
    mockup = Path(sys.argv[1])
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 8000
    web.run_app(make_app(mockup), host="127.0.0.1", port=port, access_log=None)


if __name__ == "__main__":
    asyncio.run(asyncio.sleep(0))
    main()
