"""Helpers for the simulator core tests (test_core_*.py)."""

from __future__ import annotations

import base64
import contextlib
import os
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from redfleet.sim import SimConfig, SimFleet

AUTH = {"Authorization": "Basic " + base64.b64encode(b"root:calvin").decode()}


def insecure_ssl() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@contextlib.asynccontextmanager
async def fleet_and_client(tmp_path: Any, **kw: Any) -> AsyncIterator[tuple[SimFleet, aiohttp.ClientSession]]:
    kw.setdefault("port", 0)
    kw.setdefault("time_scale", 1000.0)
    kw.setdefault("cache_dir", tmp_path / "certs")
    # the core alone by default; SIM_CORE_DYNAMICS=auto runs the same tests with the dynamic side plugged in
    kw.setdefault("dynamics", None if os.environ.get("SIM_CORE_DYNAMICS") == "auto" else False)
    cfg = SimConfig(**kw)
    async with SimFleet(cfg) as fleet:
        conn = aiohttp.TCPConnector(ssl=insecure_ssl(), limit=32)
        async with aiohttp.ClientSession(connector=conn) as client:
            yield fleet, client


async def get_json(client: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any, Any]:
    headers = kw.pop("headers", AUTH)
    async with client.get(url, headers=headers, **kw) as r:
        body = await r.read()
        try:
            import json

            data = json.loads(body) if body else None
        except ValueError:
            data = body
        return r.status, data, r.headers
