"""HttpSource against a small live service: Redfish session login, a session that expires mid-run (re-login, once
for all reads that noticed), reads that fail are recorded rather than silently empty, URIs percent-encoded."""

from __future__ import annotations

import asyncio

from aiohttp import web

from redfleet.profiles.source import HttpAuth, HttpSource

ADDRESS = "127.16.133.1"


async def serve(expire_after: int, fail_uri: str = "/redfish/v1/Broken"):
    state = {"sessions": 0, "gets": 0, "paths": []}

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method == "POST" and request.path == "/redfish/v1/SessionService/Sessions":
            body = await request.json()
            if (body.get("UserName"), body.get("Password")) != ("root", "calvin"):
                return web.json_response({}, status=401)
            state["sessions"] += 1
            sid = f"s{state['sessions']}"
            return web.json_response({"Id": sid}, status=201, headers={
                "X-Auth-Token": f"tok-{sid}", "Location": f"/redfish/v1/SessionService/Sessions/{sid}"})
        if request.method == "DELETE":
            return web.Response(status=204)
        state["paths"].append(request.raw_path)
        if request.path in ("/redfish/v1", "/redfish/v1/"):
            return web.json_response({"@odata.id": "/redfish/v1", "Links": {
                "Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}}})
        token = request.headers.get("X-Auth-Token")
        live = f"tok-s{state['sessions']}"
        state["gets"] += 1
        if token != live or (state["sessions"] == 1 and state["gets"] > expire_after):
            return web.json_response({"error": "session expired"}, status=401)
        if request.path == fail_uri:
            return web.json_response({"error": "boom"}, status=500)
        return web.json_response({"@odata.id": request.path, "Name": request.path},
                                 headers={"Allow": "GET, PATCH"})

    runner = web.AppRunner(_app(handle), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, ADDRESS, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://{ADDRESS}:{port}", state


def _app(handle) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def test_session_expiry_relogin_and_failures():
    runner, url, state = await serve(expire_after=3)
    try:
        async with HttpSource(url, HttpAuth("root", "calvin")) as src:
            uris = [f"/redfish/v1/Chassis/{i}" for i in range(12)]
            docs = await asyncio.gather(*(src.get(u) for u in uris))
            assert [d["Name"] if d else None for d in docs] == uris  # every read answered, expiry or not
            assert src.relogins == 1 and state["sessions"] == 2  # one new session for all the reads that saw 401
            assert src.allow_header(uris[0]) == "GET, PATCH"
            assert await src.get("/redfish/v1/Broken") is None
            assert src.failures == {"/redfish/v1/Broken": "HTTP 500"}
            assert await src.get("/redfish/v1/Name with space") is not None
            assert "/redfish/v1/Name%20with%20space" in state["paths"]
    finally:
        await runner.cleanup()


async def test_wrong_password_reads_fail_and_are_recorded():
    runner, url, _state = await serve(expire_after=100)
    try:
        async with HttpSource(url, HttpAuth("root", "wrong")) as src:
            assert await src.get("/redfish/v1/Systems") is None
            assert src.failures == {"/redfish/v1/Systems": "HTTP 401"}
    finally:
        await runner.cleanup()
