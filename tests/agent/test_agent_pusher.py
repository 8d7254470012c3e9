"""The pusher against a local aiohttp receiver: auth header, bounded retries, buffering while serve is down
(drop-oldest), refusal of bad batches; the pipelined client used by the simulator feeder."""

from __future__ import annotations

import random
import socket
import time

import pytest
from agent_receiver import ADDR, Receiver

from redfleet.agent.pusher import PipelinedClient, Pusher, ingest_url
from redfleet.model.ingest import IngestBatch, Sample


def _batch(i: int, node: str = "node-1") -> IngestBatch:
    return IngestBatch(node=node, sent_at=1000.0 + i,
                       samples=[Sample(metric="DCGM_FI_DEV_GPU_TEMP", value=40 + i, ts=1000.0 + i, gpu=0)])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((ADDR, 0))
        return s.getsockname()[1]


def test_ingest_url():
    assert ingest_url("http://h:1") == ingest_url("http://h:1/") == "http://h:1/api/v1/ingest"
    assert ingest_url("http://h:1/api/v1/ingest") == "http://h:1/api/v1/ingest"


async def test_push_sends_bearer_token_and_valid_batch(receiver: Receiver):
    async with Pusher(receiver.url, "tok") as p:
        assert await p.push(_batch(1))
    assert receiver.auth_headers == ["Bearer tok"]
    assert receiver.batches[0].samples[0].value == 41
    assert p.stats.sent == 1 and p.pending == 0


async def test_retries_are_bounded_and_jittered(receiver: Receiver):
    receiver.fail_next = 2  # 503 twice, then OK
    async with Pusher(receiver.url, "tok", retries=3, backoff=0.01, rng=random.Random(1)) as p:
        assert await p.push(_batch(1))
        assert p.stats.attempts == 3 and p.stats.retries == 2 and p.stats.sent == 1
    receiver.fail_next = 10
    async with Pusher(receiver.url, "tok", retries=3, backoff=0.01) as p:
        before = receiver.requests
        assert not await p.push(_batch(2))  # gave up after 3 tries; the batch stays buffered
        assert receiver.requests - before == 3 and p.pending == 1
    delays = [Pusher("http://x", "t", backoff=0.25, max_backoff=4.0, rng=random.Random(s))._delay(5, None)
              for s in range(50)]
    assert max(delays) <= 4.0 and len({round(d, 6) for d in delays}) > 40  # capped, jittered


async def test_retry_after_is_honoured_within_the_cap(receiver: Receiver):
    p = Pusher(receiver.url, "tok", backoff=0.01, max_backoff=0.3)
    assert p._delay(0, 10.0) == pytest.approx(0.3)
    assert p._delay(0, 0.2) >= 0.2


async def test_buffer_while_down_then_drain_in_order():
    port = _free_port()
    async with Pusher(f"http://{ADDR}:{port}", "tok", retries=2, backoff=0.01, buffer_batches=5,
                      timeout=1.0) as p:
        for i in range(8):
            assert not await p.push(_batch(i))  # connection refused: buffered
        assert p.pending == 5 and p.stats.dropped == 3  # bounded, oldest dropped
        r = await Receiver().start(port)
        try:
            assert await p.flush()
            assert [b.sent_at for b in r.batches] == [1003.0, 1004.0, 1005.0, 1006.0, 1007.0]  # in order
            assert p.pending == 0
        finally:
            await r.stop()


async def test_buffer_byte_bound():
    p = Pusher("http://127.18.0.1:9", "t", buffer_batches=1000, buffer_bytes=1000)
    for i in range(20):
        p.submit(_batch(i))
    assert p.buffered_bytes <= 1000 and p.pending >= 1 and p.stats.dropped == 20 - p.pending


async def test_refused_batches_are_dropped_not_retried(receiver: Receiver):
    async with Pusher(receiver.url, "wrong-token", retries=3, backoff=0.01) as p:
        assert await p.push(_batch(1))  # nothing left to send: it was refused, not kept
        assert p.stats.rejected == 1 and p.stats.attempts == 1 and p.pending == 0
        assert "401" in (p.stats.last_error or "")
        assert await p.push(b'{"node": "x"}') and p.stats.rejected == 2  # invalid batch → 422, dropped


async def test_flush_deadline_stops_early():
    port = _free_port()
    async with Pusher(f"http://{ADDR}:{port}", "tok", retries=5, backoff=0.5, max_backoff=0.5) as p:
        t0 = time.monotonic()
        assert not await p.push(_batch(1), deadline=time.monotonic() + 0.2)
        assert time.monotonic() - t0 < 0.6 and p.pending == 1


async def test_pipelined_client_many_posts_few_connections(receiver: Receiver):
    receiver.tokens = {f"n{i}": f"t{i}" for i in range(300)}
    c = PipelinedClient(ingest_url(receiver.url), connections=3, depth=32)
    items = [(_batch(i, f"n{i}").model_dump_json().encode(), f"t{i}") for i in range(300)]
    items[7] = (items[7][0], "bad")
    statuses = await c.post_many(items)
    assert statuses.count(200) == 299 and statuses[7] == 401
    assert len(c.pool) == 3  # connections kept for reuse
    assert sorted(b.node for b in receiver.batches) == sorted(f"n{i}" for i in range(300) if i != 7)
    statuses = await c.post_many(items[:10])
    assert statuses.count(200) == 9
    await c.close()


async def test_pipelined_client_server_down_gives_zero_status():
    c = PipelinedClient(f"http://{ADDR}:{_free_port()}/api/v1/ingest", connections=2, timeout=1.0)
    assert await c.post_many([(b"{}", "t")] * 4) == [0, 0, 0, 0]
    assert c.errors >= 1 and c.last_error
    await c.close()


async def test_agent_loop_buffers_while_serve_is_down_then_catches_up():
    from redfleet.agent.core import Agent

    port = _free_port()
    ag = Agent("node-7", source="none")
    async with Pusher(f"http://{ADDR}:{port}", "tok", retries=2, backoff=0.01, timeout=1.0) as p:
        assert await ag.run(p, interval=0.05, count=3) == 3
        assert p.pending == 3 and p.stats.sent == 0
        r = await Receiver(host=ADDR).start(port)
        try:
            await ag.run(p, interval=0.05, count=1)
            assert p.pending == 0
            assert [b.node for b in r.batches] == ["node-7"] * 4
            assert [b.sent_at for b in r.batches] == sorted(b.sent_at for b in r.batches)  # oldest first
            assert all(b.os_state == "up" for b in r.batches)
        finally:
            await r.stop()
    await ag.close()


async def test_agent_pushes_several_collections_as_one_batch_and_at_once_on_a_ras_change(receiver: Receiver):
    """push_every=4: four 1 Hz collections per batch, each sample with its own time; an ECC counter that moves
    goes out at once with what was held; the last collections go out when the loop ends."""
    from redfleet.agent.core import Agent

    class Counting(Agent):
        def __init__(self) -> None:
            super().__init__("node-9", source="none")
            self.k = 0

        async def collect(self, now: float | None = None) -> IngestBatch:
            self.k += 1
            ts = 1000.0 + self.k
            return IngestBatch(node=self.node, sent_at=ts, samples=[
                Sample(metric="DCGM_FI_DEV_GPU_TEMP", value=60.0 + self.k % 3, ts=ts, gpu=0),
                Sample(metric="DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", value=1.0 if self.k >= 6 else 0.0, ts=ts, gpu=0)])

    ag = Counting()
    async with Pusher(receiver.url, "tok") as p:
        assert await ag.run(p, interval=0.01, count=10, push_every=4) == 10
        await p.flush()
    sent = [sorted({s.ts for s in b.samples}) for b in receiver.batches]
    assert sent == [[1001.0, 1002.0, 1003.0, 1004.0], [1005.0, 1006.0], [1007.0, 1008.0, 1009.0, 1010.0]]
    assert [b.sent_at for b in receiver.batches] == [1004.0, 1006.0, 1010.0]  # the latest collection's header
    assert all(len(b.samples) == 2 * len(ts) for b, ts in zip(receiver.batches, sent, strict=True))
    await ag.close()


async def test_columnar_pusher_sends_rows_serve_decodes(receiver: Receiver):
    """Pusher(columnar=True): per-GPU samples as rows of columns (one per collection time), the rest as they are."""
    from redfleet.agent.core import merge_batches

    def one(ts: float) -> IngestBatch:
        return IngestBatch(node="node-3", sent_at=ts, samples=[
            *(Sample(metric=m, value=v + g, ts=ts, gpu=g) for g in range(2)
              for m, v in (("DCGM_FI_DEV_GPU_TEMP", ts - 950), ("DCGM_FI_DEV_POWER_USAGE", 300.0))),
            Sample(metric="DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", value=2, ts=ts, gpu=0,
                   labels={"nvlink": "1"})])

    async with Pusher(receiver.url, "tok", columnar=True) as p:
        assert await p.push(merge_batches([one(1000.0), one(1001.0)]))
    (node, cols), = receiver.columns
    b = receiver.batches[0]
    assert node == "node-3" and cols.ts.tolist() == [1000.0, 1001.0]
    assert cols.layout.metrics == ("DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE") and cols.layout.gpus == (0, 1)
    assert cols.values.tolist() == [[50.0, 300.0, 51.0, 301.0], [51.0, 300.0, 52.0, 301.0]]
    assert [(s.metric, s.labels) for s in b.samples] == [("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
                                                          {"nvlink": "1"})] * 2
