"""The async Redfish client: one object per BMC, used as an async context manager.

```python
async with RedfishClient("https://10.0.0.5", "root", "calvin", tls=TLSPolicy("pin", pin_store=pins)) as c:
    system = await c.get("/redfish/v1/Systems/1")
    members = await c.get_members("/redfish/v1/Chassis")      # $expand when advertised, else parallel walk
```

What it does for the caller, in order:

1. **Discovery**: GET the service root, read ``ProtocolFeaturesSupported`` and the service links
   (:mod:`capabilities`), then pick vendor quirk modules from what the root advertises (:mod:`quirks`).
2. **Authentication**: a Redfish session (``X-Auth-Token``), created once and reused by every request, deleted on
   close whatever happens (exceptions, cancellation); Basic auth when sessions are unavailable or refused
   (``auth="auto"``), or only one of the two when asked.
3. **Limits**: at most ``max_concurrency`` requests in flight to this BMC (default 4) and, when a shared
   ``global_limit`` semaphore is given, fleet-wide; a timeout per kind of resource (:class:`Timeouts`).
4. **Retries**: bounded, with full jitter, on connection errors and timeouts (idempotent requests only) and on
   429/503 (any method) honouring ``Retry-After``.
5. **Errors** are :mod:`errors` classes, classified from ``@Message.ExtendedInfo[].MessageId``.
"""

# ruff: noqa: ASYNC109  (per-request timeouts are part of the API: each kind of resource has its own)
from __future__ import annotations

import asyncio
import base64
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from redfleet.redfish import jsonutil
from redfleet.redfish import uri as U
from redfleet.redfish.capabilities import Capabilities, detect
from redfleet.redfish.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    HTTPError,
    MalformedResponse,
    NotFound,
    PreconditionFailed,
    RedfishError,
    RequestTimeout,
    SessionLimitExceeded,
    TaskFailed,
    TaskTimeout,
    Throttled,
    http_error,
)
from redfleet.redfish.tls import MemoryPinStore, PinStore, TLSPolicy
from redfleet.redfish.transport import Response, Transport, make_transport

log = logging.getLogger("redfleet.redfish")

AuthMode = Literal["auto", "session", "basic", "none"]

IDEMPOTENT = frozenset({"GET", "HEAD", "DELETE", "PUT", "OPTIONS"})


@dataclass
class Timeouts:
    """Seconds allowed for one request, by kind of resource. ``for_request`` picks the kind from the URI when the
    caller does not name one: firmware inventory and update service reads can take minutes on a DGX."""

    default: float = 30.0
    connect: float = 10.0
    login: float = 30.0
    logout: float = 10.0
    firmware: float = 300.0
    sensors: float = 20.0
    action: float = 120.0
    task: float = 1800.0  # total time a task monitor is followed
    task_poll: float = 30.0

    def for_request(self, uri: str, kind: str | None = None) -> float:
        if kind:
            return float(getattr(self, kind, self.default))
        low = uri.lower()
        if "/updateservice" in low or "firmwareinventory" in low or "softwareinventory" in low:
            return self.firmware
        if "/actions/" in low:
            return self.action
        if "/sensors" in low or "/thermal" in low or "/power" in low:
            return self.sensors
        return self.default

    @classmethod
    def uniform(cls, seconds: float) -> Timeouts:
        """Every kind the same (tests, fault injection)."""
        return cls(seconds, seconds, seconds, seconds, seconds, seconds, seconds, max(seconds, 1.0), seconds)


@dataclass
class RetryPolicy:
    """Bounded retries with full jitter. ``attempts`` counts the first try."""

    attempts: int = 4
    backoff_base: float = 0.25
    backoff_max: float = 8.0
    retry_after_max: float = 60.0  # a BMC asking for longer gets an error instead of a hung caller
    statuses: frozenset[int] = frozenset({429, 503})
    idempotent_statuses: frozenset[int] = frozenset({502, 504})

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            # Honour the BMC's own figure, with a little jitter so a fleet does not come back in lock-step.
            return min(retry_after, self.retry_after_max) * (1.0 + random.random() * 0.1)
        cap = min(self.backoff_max, self.backoff_base * (2**attempt))
        return random.uniform(0, cap)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class ActionResult:
    """What a POST/PATCH/DELETE answered. ``task`` is the task monitor URI when the BMC started a task (202)."""

    status: int
    headers: dict[str, str]
    body: dict[str, Any] | None
    task: str | None = None

    @property
    def message_ids(self) -> list[str]:
        from redfleet.redfish.errors import message_ids

        return message_ids(self.body)


@dataclass
class TaskOutcome:
    uri: str
    state: str  # Completed, Exception, Killed, Cancelled, ... (Dell jobs: Completed, Failed, ...)
    percent: int | None = None
    messages: list[str] = field(default_factory=list)
    body: dict[str, Any] | None = None


_TASK_DONE_OK = {"completed"}
_TASK_DONE_BAD = {"exception", "killed", "cancelled", "failed", "completedwitherrors", "interrupted"}


class RedfishClient:
    """One BMC. Safe to share between tasks of one event loop; every method is a coroutine."""

    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        *,
        tls: TLSPolicy | None = None,
        verify: bool | str = True,
        pin: bool = False,
        pin_store: PinStore | None = None,
        fingerprint: str | None = None,
        auth: AuthMode = "auto",
        max_concurrency: int = 4,
        global_limit: asyncio.Semaphore | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        transport: str | Transport = "fast",
        name: str | None = None,
        cache: bool = True,
    ) -> None:
        if tls is None:
            if pin or fingerprint:
                tls = TLSPolicy("pin", pin_store=pin_store if pin_store is not None else MemoryPinStore(),
                                fingerprint=fingerprint)
            elif verify is False:
                tls = TLSPolicy("insecure")
            else:
                tls = TLSPolicy("verify", ca_bundle=verify if isinstance(verify, str) else None)
        self.tls = tls
        self.username = username
        self.password = password
        self.auth_mode: AuthMode = auth if username is not None else "none"
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self.max_concurrency = max(1, max_concurrency)
        self.global_limit = global_limit
        if isinstance(transport, str):
            self.transport: Transport = make_transport(
                transport, url, tls=tls, max_connections=self.max_concurrency, connect_timeout=self.timeouts.connect
            )
        else:
            self.transport = transport
        self.base_url = self.transport.base_url
        self.name = name or self.base_url
        self.caps = Capabilities()
        self.root: dict[str, Any] = {}
        self.quirks: list[Any] = []
        self.auth_used: str = "none"  # "session" | "basic" | "none" once open
        self._token: str | None = None
        self._session_uri: str | None = None
        self._basic: str | None = None
        self._login_lock = asyncio.Lock()
        self._opened = False
        self._closed = False
        self._cache_enabled = cache
        self._cache: dict[str, dict[str, Any]] = {}
        self._inflight: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._expand_broken = False
        self._etag_broken = False
        self.requests = 0  # requests sent (retries included): for benchmarks and tests
        self.stats: dict[str, int] = {"retries": 0, "relogins": 0}
        self.skipped: list[str] = []  # resources skipped as unreadable (collections, members): for warnings
        self.sensor_plan: Any = None  # sensors.SensorPlan: what a warm sensor poll reads (kept across forget())

    # ------------------------------------------------------------------------------------------------------------
    # lifecycle

    async def __aenter__(self) -> RedfishClient:
        try:
            await self.open()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Discover the service root, detect capabilities and quirks, log in."""
        if self._opened:
            return
        try:
            self.root = await self.get("/redfish/v1", auth=False, cache=False)
        except AuthenticationFailed:
            # A few BMCs protect the root too: log in first (with the standard session URI), then read it.
            await self._login()
            self.root = await self.get("/redfish/v1", cache=False)
        self.caps = detect(self.root)
        from redfleet.redfish.quirks import select_quirks

        self.quirks = select_quirks(self.caps, self.root)
        for q in self.quirks:
            q.adjust(self)
        if self.auth_used == "none":
            await self._login()
        self._opened = True

    async def close(self) -> None:
        """Log out (DELETE the session) and close connections. Idempotent; survives cancellation."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._session_uri and self._token:
                await asyncio.shield(self._logout())
        finally:
            await self.transport.close()

    async def _logout(self) -> None:
        uri, self._session_uri = self._session_uri, None
        if not uri:
            return
        try:
            resp = await self._send("DELETE", uri, None, None, self.timeouts.logout, auth=True, attempts=2)
            if resp.status >= 400 and resp.status != 404:
                log.warning("%s: logout of %s answered HTTP %s", self.name, uri, resp.status)
        except RedfishError as exc:
            log.warning("%s: logout of %s failed: %s", self.name, uri, exc)
        finally:
            self._token = None

    # ------------------------------------------------------------------------------------------------------------
    # authentication

    def _basic_header(self) -> str:
        raw = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _sessions_uri(self) -> str:
        if self.caps.sessions_uri:
            return self.caps.sessions_uri
        ss = self.caps.services.get("SessionService")
        return U.join(ss, "Sessions") if ss else "/redfish/v1/SessionService/Sessions"

    async def _login(self) -> None:
        async with self._login_lock:
            await self._login_locked()

    async def _login_locked(self) -> None:
        mode = self.auth_mode
        if mode == "none":
            self.auth_used = "none"
            return
        if mode == "basic":
            self._basic = self._basic_header()
            self.auth_used = "basic"
            return
        body = jsonutil.dumps({"UserName": self.username, "Password": self.password or ""})
        uri = self._sessions_uri()
        try:
            resp = await self._send(
                "POST", uri, body, {"Content-Type": "application/json"}, self.timeouts.login, auth=False
            )
        except Throttled as exc:
            resp = None
            failure: RedfishError = exc
        else:
            failure = None  # type: ignore[assignment]
        if resp is not None and resp.status in (200, 201, 204):
            token = resp.header("x-auth-token")
            location = resp.header("location")
            parsed = _json_or_none(resp.body)
            if not location and isinstance(parsed, dict):
                location = parsed.get("@odata.id")
            if token:
                self._token = token
                self._session_uri = U.normalize(location) if location else None
                self._basic = None
                self.auth_used = "session"
                if not self._session_uri:
                    log.warning("%s: session created without a Location; it cannot be deleted on close", self.name)
                return
            failure = MalformedResponse("session created but no X-Auth-Token header", bmc=self.base_url, uri=uri)
        elif resp is not None:
            failure = http_error(resp.status, _json_or_none(resp.body), bmc=self.base_url, uri=uri, method="POST")
            if resp.status == 401 and not isinstance(failure, SessionLimitExceeded):
                failure = AuthenticationFailed(
                    f"login refused (HTTP 401) for user {self.username!r}", bmc=self.base_url, uri=uri,
                    status=401, message_ids=failure.message_ids,
                )
        assert failure is not None
        if mode == "session" or isinstance(failure, AuthenticationFailed):
            if isinstance(failure, Throttled) and not isinstance(failure, SessionLimitExceeded):
                failure = SessionLimitExceeded(
                    f"session refused: {failure.message}", bmc=self.base_url, uri=uri, status=failure.status,
                    message_ids=failure.message_ids,
                )
            raise failure
        # auto: fall back to Basic auth, and check that it works before going on.
        log.warning("%s: session login failed (%s); falling back to Basic auth", self.name, failure.message)
        self._basic = self._basic_header()
        self.auth_used = "basic"
        probe = self.caps.services.get("Systems") or "/redfish/v1/Systems"
        try:
            await self.get(probe, cache=False)
        except AuthenticationFailed as exc:
            self._basic = None
            self.auth_used = "none"
            raise SessionLimitExceeded(
                f"session refused ({failure.message}) and Basic auth refused too ({exc.message})",
                bmc=self.base_url, uri=uri, status=failure.status, message_ids=failure.message_ids,
            ) from exc
        except RedfishError:
            pass  # not an auth problem: let the real request report it

    def _auth_headers(self) -> dict[str, str]:
        if self._token:
            return {"X-Auth-Token": self._token}
        if self._basic:
            return {"Authorization": self._basic}
        return {}

    # ------------------------------------------------------------------------------------------------------------
    # the request engine

    async def _send(
        self,
        method: str,
        uri: str,
        body: bytes | None,
        headers: dict[str, str] | None,
        timeout: float,
        *,
        auth: bool = True,
        attempts: int | None = None,
    ) -> Response:
        """Send with retries; return the final Response (any status except retried 429/503 exhaustion)."""
        policy = self.retry
        tries = attempts if attempts is not None else policy.attempts
        idempotent = method in IDEMPOTENT
        relogins = 0
        attempt = 0
        while True:
            hdrs = {"Accept": "application/json", "OData-Version": "4.0"}
            if auth:
                hdrs.update(self._auth_headers())
            if headers:
                hdrs.update(headers)
            try:
                if self.global_limit is not None:
                    async with self.global_limit:
                        self.requests += 1
                        resp = await self.transport.request(method, uri, hdrs, body, timeout)
                else:
                    self.requests += 1
                    resp = await self.transport.request(method, uri, hdrs, body, timeout)
            except (ConnectionFailed, RequestTimeout) as exc:
                exc.uri = exc.uri or uri
                attempt += 1
                if not idempotent or attempt >= tries:
                    if attempt > 1:
                        exc.message += f" (after {attempt} attempts)"
                    raise
                self.stats["retries"] += 1
                await asyncio.sleep(policy.delay(attempt - 1, None))
                continue
            status = resp.status
            if status in policy.statuses or (idempotent and status in policy.idempotent_statuses):
                attempt += 1
                retry_after = parse_retry_after(resp.header("retry-after"))
                if attempt >= tries or (retry_after is not None and retry_after > policy.retry_after_max):
                    err = http_error(status, _json_or_none(resp.body), bmc=self.base_url, uri=uri, method=method)
                    if not isinstance(err, Throttled):
                        err = Throttled(err.message, bmc=self.base_url, uri=uri, status=status,
                                        message_ids=err.message_ids, body=err.body)
                    err.message += f" after {attempt} attempts" + (
                        f" (Retry-After: {resp.header('retry-after')})" if retry_after is not None else "")
                    raise err
                self.stats["retries"] += 1
                await asyncio.sleep(policy.delay(attempt - 1, retry_after))
                continue
            if status == 401 and auth and self._token and relogins < 2 and self.auth_mode in ("auto", "session"):
                # Session expired or was deleted on the BMC side (a reset, an idle timeout while this request
                # waited in a long queue): log in again, at most twice per request.
                relogins += 1
                self.stats["relogins"] += 1
                stale = self._token
                async with self._login_lock:
                    if self._token == stale:
                        self._token = None
                        self._session_uri = None
                        await self._login_locked()
                continue
            return resp

    async def request(
        self,
        method: str,
        uri: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        kind: str | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Low-level: send one request (with auth, limits, retries) and return the raw Response, any status."""
        path = U.normalize(uri)
        body = jsonutil.dumps(json) if json is not None else None
        hdrs = dict(headers or {})
        if body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        t = timeout if timeout is not None else self.timeouts.for_request(path, kind)
        return await self._send(method, path, body, hdrs, t)

    # ------------------------------------------------------------------------------------------------------------
    # reading

    async def get(
        self,
        uri: str,
        *,
        kind: str | None = None,
        query: str | None = None,
        cache: bool = True,
        auth: bool = True,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """GET a resource and return its JSON object. Raises a classified RedfishError on any failure.

        Within one client, concurrent and repeated GETs of the same URI are served once (``cache=False`` to read
        live values again)."""
        path = U.normalize(uri)
        frag = U.fragment(uri)
        target = f"{path}{'&' if '?' in path else '?'}{query}" if query else path
        use_cache = cache and self._cache_enabled
        ck = path.casefold() + ("?" + query if query else "")
        if use_cache:
            hit = self._cache.get(ck)
            if hit is not None:
                return _resolve_fragment(hit, frag) if frag else hit
            fut = self._inflight.get(ck)
            if fut is not None:
                doc = await asyncio.shield(fut)
                return _resolve_fragment(doc, frag) if frag else doc
            fut = asyncio.get_running_loop().create_future()
            self._inflight[ck] = fut
            try:
                doc = await self._get_uncached(target, kind, auth, timeout)
            except BaseException as exc:
                self._inflight.pop(ck, None)
                if not fut.done():
                    if isinstance(exc, Exception):
                        fut.set_exception(exc)
                        fut.exception()  # mark retrieved: waiters re-raise it, nobody else needs to
                    else:
                        fut.cancel()
                raise
            self._inflight.pop(ck, None)
            self._cache[ck] = doc
            if not fut.done():
                fut.set_result(doc)
        else:
            doc = await self._get_uncached(target, kind, auth, timeout)
        return _resolve_fragment(doc, frag) if frag else doc

    async def _get_uncached(self, target: str, kind: str | None, auth: bool, timeout: float | None) -> dict[str, Any]:
        t = timeout if timeout is not None else self.timeouts.for_request(target, kind)
        resp = await self._send("GET", target, None, None, t, auth=auth)
        if resp.status >= 400:
            raise http_error(resp.status, _json_or_none(resp.body), bmc=self.base_url, uri=target)
        if resp.status == 204 or not resp.body:
            raise MalformedResponse(f"GET answered HTTP {resp.status} with an empty body", bmc=self.base_url,
                                    uri=target, status=resp.status)
        try:
            doc = jsonutil.loads(resp.body)
        except ValueError as exc:
            snippet = resp.body[:80].decode("utf-8", "replace")
            raise MalformedResponse(
                f"GET answered HTTP {resp.status} with a body that is not JSON ({exc}; starts {snippet!r})",
                bmc=self.base_url, uri=target, status=resp.status,
            ) from exc
        if not isinstance(doc, dict):
            raise MalformedResponse(
                f"GET answered a JSON {type(doc).__name__}, not an object", bmc=self.base_url, uri=target,
                status=resp.status,
            )
        return doc

    async def try_get(self, uri: str | None, **kw: Any) -> dict[str, Any] | None:
        """GET, but None for a missing link, 404, or a resource the BMC cannot serve (logged at debug)."""
        if not uri:
            return None
        try:
            return await self.get(uri, **kw)
        except (NotFound, HTTPError, MalformedResponse) as exc:
            if isinstance(exc, AuthenticationFailed):
                raise
            log.debug("%s: skipping %s: %s", self.name, uri, exc)
            return None

    async def get_members(
        self,
        collection: str | dict[str, Any] | None,
        *,
        expand: bool = True,
        kind: str | None = None,
        ignore_errors: bool = True,
        cache: bool = True,
        levels: int = 1,
    ) -> list[dict[str, Any]]:
        """Every member of a collection as full resources.

        Uses ``$expand`` at the level the service advertises; follows ``Members@odata.nextLink`` paging; fetches
        members the BMC left as bare links (no ``$expand``, or an ``$expand`` it ignored) in parallel, bounded by
        the per-BMC cap. A member that cannot be read (missing, malformed) is skipped and listed in
        ``client.skipped``; with ``ignore_errors`` so is an unreadable collection (else it raises)."""
        if collection is None:
            return []
        coll_uri = collection if isinstance(collection, str) else U.odata_id(collection)
        if not coll_uri:
            return []
        query = None if (not expand or self._expand_broken) else self.caps.expand_query(levels)
        doc: dict[str, Any] | None
        try:
            doc = await self.get(coll_uri, kind=kind, query=query, cache=cache)
        except (HTTPError, MalformedResponse) as exc:
            soft = not isinstance(exc, (AuthenticationFailed, Throttled, SessionLimitExceeded))
            if query is None or not soft or isinstance(exc, NotFound):
                if ignore_errors and soft:
                    log.debug("%s: collection %s unreadable: %s", self.name, coll_uri, exc)
                    self.skipped.append(f"{coll_uri}: {exc.message}")
                    return []
                raise
            if isinstance(exc, HTTPError) and exc.status in (400, 405, 501):
                # The BMC advertises $expand but rejects it: stop asking for the rest of this client's life.
                log.info("%s: $expand rejected on %s (%s); walking instead", self.name, coll_uri, exc)
                self._expand_broken = True
            return await self.get_members(coll_uri, expand=False, kind=kind, ignore_errors=ignore_errors, cache=cache)
        return await self.members_of(coll_uri, doc, kind=kind, cache=cache)

    async def members_of(
        self, coll_uri: str, doc: dict[str, Any], *, kind: str | None = None, cache: bool = True
    ) -> list[dict[str, Any]]:
        """The members of a collection document already read: its further pages (``Members@odata.nextLink``)
        read, links resolved (see :meth:`get_members`)."""
        members: list[Any] = list(doc.get("Members") or [])
        next_link = doc.get("Members@odata.nextLink")
        seen_pages: set[str] = set()
        while isinstance(next_link, str) and next_link and len(seen_pages) < 10000:
            if next_link in seen_pages:
                log.warning("%s: %s: nextLink %s repeats; stopping paging", self.name, coll_uri, next_link)
                break
            seen_pages.add(next_link)
            page = await self.get(next_link, kind=kind, cache=cache)
            members.extend(page.get("Members") or [])
            next_link = page.get("Members@odata.nextLink")
        return await self.resolve_links(members, kind=kind, cache=cache)

    async def resolve_links(
        self, items: Iterable[Any], *, kind: str | None = None, ignore_errors: bool = True, cache: bool = True
    ) -> list[dict[str, Any]]:
        """Turn a list of link objects / expanded resources into resources, fetching bare links in parallel."""
        out: list[dict[str, Any] | None] = []
        pending: list[tuple[int, str]] = []
        seen: set[str] = set()
        keep = cache and self._cache_enabled
        for item in items:
            if type(item) is not dict and not isinstance(item, dict):
                continue
            oid = U.odata_id(item)
            if oid:
                k = (oid.split("?", 1)[0] if "?" in oid else oid).casefold()  # U.key of a normalized link
                if k in seen:
                    continue
                seen.add(k)
            if oid and _is_bare_link(item):
                pending.append((len(out), oid))
                out.append(None)
            else:
                if oid and keep and "#" not in item.get("@odata.id", ""):
                    self._cache.setdefault(oid.casefold(), item)
                out.append(item)
        if pending:
            results = await asyncio.gather(
                *(self.get(u, kind=kind, cache=cache) for _, u in pending), return_exceptions=True
            )
            for (idx, u), res in zip(pending, results, strict=True):
                if isinstance(res, BaseException):
                    if not ignore_errors or not is_soft_error(res):
                        raise res
                    log.debug("%s: member %s unreadable: %s", self.name, u, res)
                    self.skipped.append(f"{u}: {getattr(res, 'message', res)}")
                    continue
                out[idx] = res
        return [d for d in out if d is not None]

    async def gather_limited(self, coros: Iterable[Awaitable[Any]]) -> list[Any]:
        """asyncio.gather with exceptions returned (the per-BMC cap is enforced by the transport)."""
        return await asyncio.gather(*coros, return_exceptions=True)

    # ------------------------------------------------------------------------------------------------------------
    # writing

    def _action_result(self, method: str, uri: str, resp: Response) -> ActionResult:
        parsed = _json_or_none(resp.body)
        if resp.status >= 400:
            raise http_error(resp.status, parsed, bmc=self.base_url, uri=uri, method=method)
        task = None
        if resp.status == 202:
            task = resp.header("location")
            if not task and isinstance(parsed, dict) and "TaskState" in parsed:
                task = parsed.get("@odata.id")
            task = U.normalize(task) if task else None
        return ActionResult(resp.status, resp.headers, parsed if isinstance(parsed, dict) else None, task)

    async def post(
        self, uri: str, body: dict[str, Any] | None = None, *, kind: str = "action", timeout: float | None = None
    ) -> ActionResult:
        """POST (actions, collections). Not retried on connection errors (an action must not run twice)."""
        resp = await self.request("POST", uri, json=body if body is not None else {}, kind=kind, timeout=timeout)
        self._invalidate(uri)
        return self._action_result("POST", U.normalize(uri), resp)

    async def delete(self, uri: str) -> ActionResult:
        resp = await self.request("DELETE", uri)
        self._invalidate(uri)
        return self._action_result("DELETE", U.normalize(uri), resp)

    async def patch(self, uri: str, body: dict[str, Any], *, etag: bool | str = True) -> ActionResult:
        """PATCH with ``If-Match`` when the resource has an ETag (``etag=True`` reads it first; a string is used as
        is). On 412 the ETag is refreshed and the PATCH tried once more; a BMC that rejects its own fresh ETag
        (or the If-Match header itself) is remembered and patched without If-Match from then on."""
        path = U.normalize(uri)
        tag: str | None = None
        if isinstance(etag, str):
            tag = etag
        elif etag and not self._etag_broken:
            tag = await self._current_etag(path)
        for attempt in range(3):
            headers = {"If-Match": tag} if tag else None
            resp = await self.request("PATCH", path, json=body, headers=headers)
            if tag and resp.status == 412 and attempt == 0:
                log.info("%s: PATCH %s: ETag %s stale; re-reading", self.name, path, tag)
                tag = await self._current_etag(path) or None
                continue
            if tag and (resp.status == 412 or (resp.status in (400, 428) and _mentions_etag(resp.body))):
                log.warning("%s: PATCH %s: BMC mishandles ETags (HTTP %s); patching without If-Match",
                            self.name, path, resp.status)
                self._etag_broken = True
                tag = None
                continue
            if resp.status == 428 and not tag:  # If-Match required
                tag = await self._current_etag(path)
                if tag:
                    continue
            self._invalidate(path)
            return self._action_result("PATCH", path, resp)
        self._invalidate(path)
        raise PreconditionFailed("PATCH kept failing its precondition", bmc=self.base_url, uri=path, status=412)

    async def _current_etag(self, path: str) -> str | None:
        resp = await self._send("GET", path, None, None, self.timeouts.for_request(path))
        if resp.status >= 400:
            raise http_error(resp.status, _json_or_none(resp.body), bmc=self.base_url, uri=path)
        tag = resp.header("etag")
        if not tag:
            doc = _json_or_none(resp.body)
            if isinstance(doc, dict):
                tag = doc.get("@odata.etag")
        return tag or None

    def _invalidate(self, uri: str) -> None:
        k = U.normalize(uri).casefold()
        for ck in [c for c in self._cache if c == k or c.startswith(k + "?")]:
            self._cache.pop(ck, None)

    def drop_idle_connections(self) -> None:
        """Close this client's idle keep-alive connections; the session stays (a fleet poller between polls)."""
        drop = getattr(self.transport, "drop_idle", None)
        if drop is not None:
            drop()

    def forget(self) -> None:
        """Drop every cached GET (read live values again)."""
        self._cache.clear()

    def forget_many(self, docs: Iterable[dict[str, Any]]) -> None:
        """Drop these resources (and the collections they came in) from the cache: live values next time."""
        for d in docs:
            oid = U.odata_id(d)
            if oid:
                self._cache.pop(oid.casefold(), None)

    # ------------------------------------------------------------------------------------------------------------
    # tasks

    async def wait_task(
        self,
        task: str | ActionResult,
        *,
        timeout: float | None = None,
        poll: float = 2.0,
        on_progress: Callable[[TaskOutcome], None] | None = None,
    ) -> TaskOutcome:
        """Follow a task monitor until the task ends; raise TaskFailed / TaskTimeout.

        A task monitor answers 202 while running and the final response when done; the Task resource carries
        ``TaskState``. Vendor quirks may take over (Dell: a task that becomes a job under ``/Jobs``)."""
        monitor = task.task if isinstance(task, ActionResult) else task
        if not monitor:
            raise TaskFailed("no task monitor to follow", bmc=self.base_url)
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeouts.task)
        for q in self.quirks:
            follow = getattr(q, "follow_task", None)
            if follow is not None:
                outcome = await follow(self, monitor, deadline, poll, on_progress)
                if outcome is not None:
                    return outcome
        return await self.follow_monitor(monitor, deadline, poll, on_progress)

    async def follow_monitor(
        self,
        monitor: str,
        deadline: float,
        poll: float,
        on_progress: Callable[[TaskOutcome], None] | None = None,
    ) -> TaskOutcome:
        last: TaskOutcome | None = None
        while True:
            resp = await self._send("GET", monitor, None, None, self.timeouts.task_poll)
            doc = _json_or_none(resp.body)
            doc = doc if isinstance(doc, dict) else None
            if resp.status == 404 and last is not None:
                # Some services delete the monitor when the task ends; the last state seen stands.
                return _finish(last)
            if resp.status >= 400:
                raise http_error(resp.status, doc, bmc=self.base_url, uri=monitor)
            outcome = task_outcome(monitor, doc)
            if on_progress is not None:
                on_progress(outcome)
            if resp.status != 202:
                state = outcome.state.lower()
                if state in _TASK_DONE_BAD or state in _TASK_DONE_OK or not doc or "TaskState" not in doc:
                    if state in ("new", "running", "pending", "starting", "stopping", "suspended"):
                        pass  # a Task resource polled directly (not a monitor): keep polling
                    else:
                        return _finish(outcome if doc and "TaskState" in doc else
                                       TaskOutcome(monitor, "Completed", 100, outcome.messages, doc))
            last = outcome
            if time.monotonic() >= deadline:
                raise TaskTimeout(f"task still {outcome.state} when the wait ended", bmc=self.base_url, uri=monitor)
            wait = parse_retry_after(resp.header("retry-after"))
            step = wait if wait is not None else poll
            await asyncio.sleep(min(max(step, 0.01), max(0.01, deadline - time.monotonic())))


def task_outcome(uri: str, doc: dict[str, Any] | None) -> TaskOutcome:
    if not doc:
        return TaskOutcome(uri, "Running")
    state = str(doc.get("TaskState") or doc.get("JobState") or "Running")
    pct = doc.get("PercentComplete")
    msgs = []
    for m in doc.get("Messages") or []:
        if isinstance(m, dict):
            text = m.get("Message") or m.get("MessageId")
            if text:
                msgs.append(str(text))
    if doc.get("Message") and isinstance(doc.get("Message"), str):
        msgs.append(doc["Message"])
    return TaskOutcome(uri, state, pct if isinstance(pct, int) else None, msgs, doc)


def _finish(outcome: TaskOutcome) -> TaskOutcome:
    if outcome.state.lower() in _TASK_DONE_BAD:
        raise TaskFailed(
            f"task ended {outcome.state}" + (f": {'; '.join(outcome.messages[:3])}" if outcome.messages else ""),
            uri=outcome.uri, body=outcome.body,
        )
    return outcome


def is_soft_error(exc: BaseException) -> bool:
    """Errors that lose one resource, not the conversation with the BMC: missing, unsupported, unreadable.
    Timeouts, refused connections, throttling, auth and TLS failures are hard: the node is in trouble."""
    if isinstance(exc, (Throttled, AuthenticationFailed, SessionLimitExceeded)):
        return False
    return isinstance(exc, (NotFound, HTTPError, MalformedResponse))


def _json_or_none(body: bytes) -> Any:
    if not body:
        return None
    try:
        return jsonutil.loads(body)
    except ValueError:
        return None


def _mentions_etag(body: bytes) -> bool:
    low = body[:4000].lower()
    return b"etag" in low or b"if-match" in low or b"precondition" in low


def _is_bare_link(item: dict[str, Any]) -> bool:
    for k in item:  # a plain loop: this runs once per collection member (hundreds per sensor poll)
        if not k.startswith("@odata"):
            return False
    return True


def _resolve_fragment(doc: dict[str, Any], frag: str | None) -> dict[str, Any]:
    """``#/PowerSupplies/0`` inside a resource (legacy Power/Thermal arrays)."""
    if not frag:
        return doc
    cur: Any = doc
    for part in frag.strip("/").split("/"):
        if isinstance(cur, list):
            try:
                cur = cur[int(part)]
            except (ValueError, IndexError):
                return doc
        elif isinstance(cur, dict):
            if part not in cur:
                return doc
            cur = cur[part]
        else:
            return doc
    return cur if isinstance(cur, dict) else doc
