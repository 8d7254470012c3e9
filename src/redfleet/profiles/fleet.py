"""Validating many targets at once: live BMCs (URLs) or captured mockup trees (directories)."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from redfleet.profiles.engine import WAITING_ROOM, FleetPlan, Options, TargetResult, WaitingRoom, validate_source
from redfleet.profiles.memo import VerdictMemo
from redfleet.profiles.profile import ProfileSet
from redfleet.profiles.source import CachedSource, HttpAuth, HttpSource, MockupSource

T = TypeVar("T")


@dataclass
class Target:
    name: str
    location: str  # http(s)://host[:port] or a mockup directory
    username: str | None = None
    password: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)

    @property
    def is_mockup(self) -> bool:
        return not self.location.startswith(("http://", "https://"))


async def validate_target(target: Target, profiles: ProfileSet, options: Options, protocol: bool = True,
                          request_timeout: float = 30.0, per_target_concurrency: int = 8) -> TargetResult:
    began = time.perf_counter()
    try:
        if target.is_mockup:
            is_dir = await asyncio.to_thread(os.path.isdir, target.location)
            source: Any = MockupSource(Path(target.location)) if is_dir else None
            if source is None:
                raise FileNotFoundError(f"{target.location} is neither a URL nor a mockup directory")
            result = await validate_source(source, profiles, options, target=target.name)
        else:
            auth = HttpAuth(target.username, target.password, "session")
            async with HttpSource(target.location, auth, timeout=request_timeout,
                                  concurrency=per_target_concurrency) as http:
                cached = CachedSource(http)
                result = await validate_source(cached, profiles, options, target=target.name)
                result.read_errors = dict(http.failures)
                if protocol and not result.error:
                    from redfleet.profiles.protocol import protocol_checks

                    result.protocol = await protocol_checks(target.location, target.username, target.password,
                                                            profiles, cached, request_timeout=request_timeout)
    except Exception as exc:
        result = TargetResult(target.name, profiles.label, [], error=f"{type(exc).__name__}: {exc}")
    result.elapsed_s = time.perf_counter() - began
    return result


async def validate_fleet(targets: list[Target], profiles: ProfileSet, options: Options | None = None,
                         concurrency: int = 64, protocol: bool = True, request_timeout: float = 30.0,
                         on_result: Callable[[TargetResult], None] | None = None) -> list[TargetResult]:
    """Validate every target, ``concurrency`` at a time; results come back in the targets' order."""
    options = options or Options()
    sem = asyncio.Semaphore(max(1, concurrency))
    room = WaitingRoom(sem, 2 * max(1, concurrency))

    async def one(t: Target) -> TargetResult:
        WAITING_ROOM.set(room)  # this task's own context: a follower waiting for its template frees its slot
        async with sem:
            r = await validate_target(t, profiles, options, protocol=protocol,
                                    request_timeout=request_timeout)
        # The results pile up (about a thousand rows per node); the cyclic collector would walk all of them again
        # and again (half of the run's CPU at 1,000 nodes). Kept out of its sight: what exists now, results
        # included, goes to the permanent generation (constant time); the reads in flight are freed by reference
        # counting as usual.
        gc.freeze()
        if on_result:
            on_result(r)
        return r

    try:
        return list(await asyncio.gather(*(one(t) for t in targets)))
    finally:
        gc.unfreeze()  # (cyclic garbage frozen meanwhile is collected again from here on)


def _validate_chunk(targets: list[Target], profiles: ProfileSet, mode: str, fast: bool,
                    kwargs: dict[str, Any]) -> list[TargetResult]:
    return run(validate_fleet(targets, profiles, fleet_options(mode, fast), **kwargs))


def validate_fleet_processes(targets: list[Target], profiles: ProfileSet, mode: str = "strict", fast: bool = True,
                             workers: int = 2, **kwargs: Any) -> list[TargetResult]:
    """:func:`validate_fleet` spread over ``workers`` processes (one event loop per core): targets dealt out in
    turn, each process with its own fleet plan (so each learns every platform once); results in the targets'
    order. ``kwargs`` go to :func:`validate_fleet` (``concurrency`` is per process)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    workers = max(1, min(workers, len(targets)))
    if workers == 1:
        return _validate_chunk(targets, profiles, mode, fast, kwargs)
    chunks = [targets[i::workers] for i in range(workers)]
    # Unpickling the workers' results makes a million objects here (rows): without the cyclic collector, which
    # would otherwise walk them again and again (most of this process's CPU, taken from the workers' cores).
    enabled = gc.isenabled()
    gc.disable()
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = list(pool.map(_validate_chunk, chunks, [profiles] * workers, [mode] * workers,
                                  [fast] * workers, [kwargs] * workers))
    finally:
        if enabled:
            gc.enable()
    out: list[TargetResult | None] = [None] * len(targets)
    for w, part in enumerate(parts):
        for j, result in enumerate(part):
            out[w + j * workers] = result
    return [r for r in out if r is not None]


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a validation on uvloop when it is installed (less CPU per request), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; the fallback is for odd platforms
        return asyncio.run(coro)
    return uvloop.run(coro)


def fleet_options(mode: str = "strict", fast: bool = True) -> Options:
    """Options for a fleet run: with ``fast``, the first node of each platform is read in full and the others read
    what it needed (see :class:`FleetPlan`), and a resource whose requirement-relevant content was judged on another
    node is not judged again (see :class:`VerdictMemo`)."""
    return Options(mode=mode, plan=FleetPlan(VerdictMemo()) if fast else None)
