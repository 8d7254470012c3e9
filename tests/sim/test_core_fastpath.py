"""The fast path and its hand-over to aiohttp keep HTTP semantics (pipelining, keep-alive, close)."""

from __future__ import annotations

import asyncio
import base64

import pytest
from sim_core_helpers import fleet_and_client

pytestmark = pytest.mark.usefixtures("mockups")

AUTH_LINE = b"Authorization: Basic " + base64.b64encode(b"root:calvin") + b"\r\n"


async def read_responses(reader: asyncio.StreamReader, count: int) -> list[tuple[int, bytes]]:
    out = []
    for _ in range(count):
        status = int((await reader.readline()).split()[1])
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        out.append((status, await reader.readexactly(length)))
    return out


async def test_pipelined_fast_then_slow(tmp_path):
    async with fleet_and_client(tmp_path, mix={"openbmc": 1}, http=True, base_address="127.10.21.1") as (fleet, _c):
        n = fleet.nodes[0]
        reader, writer = await asyncio.open_connection(n.address, fleet.port)
        get = b"GET /redfish/v1/Systems/system HTTP/1.1\r\nHost: x\r\n" + AUTH_LINE + b"\r\n"
        noauth = b"GET /redfish/v1/Systems HTTP/1.1\r\nHost: x\r\n\r\n"
        body = b'{"ResetType": "ForceOff"}'
        post = (b"POST /redfish/v1/Systems/system/Actions/ComputerSystem.Reset HTTP/1.1\r\nHost: x\r\n" + AUTH_LINE
                + b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        writer.write(get + get)  # two fast ones in one segment
        (s1, b1), (s2, b2) = await read_responses(reader, 2)
        assert s1 == s2 == 200 and b1 == b2 and b'"PowerState":"On"' in b1
        writer.write(get + noauth + post + get)  # fast, 401, action, then GET on the handed-over connection
        res = await read_responses(reader, 4)
        assert [s for s, _ in res] == [200, 401, 204, 200]
        assert b'"PowerState":"Off"' in res[3][1]
        writer.write(b"GET /redfish/v1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        (s5, _b5), = await read_responses(reader, 1)
        assert s5 == 200
        assert await reader.read() == b""  # closed
        writer.close()
