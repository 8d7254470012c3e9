"""Small Redfish servers for tests and examples: a static mockup server and BMCs that misbehave on purpose.

:class:`MockupBMC` serves a DMTF "tall" mockup tree (``<tree>/redfish/v1/.../index.json``) read-only, with
sessions, Basic auth, ``$expand`` (when the tree's root advertises it), PATCH with ETags, reset actions and task
monitors, so that the client can be tested against the real captures without the simulator. Faults are switches
on the same object (``fault=...``): ``hang`` (never answers), ``throttle`` (503/429 with Retry-After for the
first N requests), ``refuse-sessions`` (session table full), ``bad-json`` (malformed bodies), ``close`` (drops
the connection), ``etag-broken`` (rejects every If-Match). TLS: pass ``tls_cert=(certfile, keyfile)``;
:func:`self_signed_cert` makes one, :meth:`MockupBMC.rotate_certificate` swaps it (certificate-change fault).

Everything binds to loopback addresses only.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as _dt
import itertools
import json
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from redfleet.redfish import uri as U


def self_signed_cert(
    directory: str | Path, common_name: str = "bmc.test", address: str = "127.0.0.1"
) -> tuple[str, str]:
    """Write a fresh self-signed cert + key (PEM) into ``directory``; return their paths."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _dt.datetime.now(_dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(days=1))
        .not_valid_after(now + _dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name),
                                                    x509.IPAddress(ipaddress.ip_address(address))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    n = next(_cert_counter)
    certfile, keyfile = d / f"cert{n}.pem", d / f"key{n}.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certfile), str(keyfile)


_cert_counter = itertools.count(1)


def cert_fingerprint(certfile: str) -> str:
    der = ssl.PEM_cert_to_DER_cert(Path(certfile).read_text())
    import hashlib

    return "sha256:" + hashlib.sha256(der).hexdigest()


class MockupTree:
    """Read-only index of a tall mockup: normalized, case-folded path -> parsed document (loaded lazily)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        base = self.root / "redfish" / "v1"
        if not base.is_dir():
            raise FileNotFoundError(f"{self.root} is not a tall Redfish mockup (no redfish/v1)")
        self._files: dict[str, Path] = {}
        for f in base.rglob("index.json"):
            rel = f.parent.relative_to(self.root).as_posix()
            self._files[U.key("/" + rel)] = f
        self._docs: dict[str, dict[str, Any]] = {}

    def paths(self) -> list[str]:
        return sorted(self._files)

    def get(self, path: str) -> dict[str, Any] | None:
        k = U.key(path)
        doc = self._docs.get(k)
        if doc is None:
            f = self._files.get(k)
            if f is None:
                return None
            try:
                doc = json.loads(f.read_text(encoding="utf-8", errors="replace"))
            except ValueError:
                return None
            self._docs[k] = doc
        return doc


@dataclass
class Faults:
    hang: bool = False  # accept, never answer
    throttle: int = 0  # answer the next N requests with throttle_status + Retry-After
    throttle_status: int = 503
    retry_after: str | None = "1"
    refuse_sessions: bool = False  # session table full (iDRAC style message)
    refuse_basic: bool = False
    bad_json: bool = False  # every GET body is truncated JSON
    close: bool = False  # drop the connection without answering
    etag_broken: bool = False  # every If-Match answered 412
    slow: float = 0.0  # extra seconds per answer
    paths: set[str] = field(default_factory=set)  # when non-empty, faults only on these (keys)

    def applies(self, path: str) -> bool:
        return not self.paths or U.key(path) in self.paths


class MockupBMC:
    """One simulated BMC serving a mockup tree. Use as ``async with MockupBMC(tree, address=...) as bmc``."""

    def __init__(
        self,
        tree: str | Path | MockupTree,
        *,
        address: str = "127.0.0.1",
        port: int = 0,
        username: str = "root",
        password: str = "calvin",
        session_limit: int = 8,
        expand: bool | None = None,
        require_auth: bool = True,
        tls_cert: tuple[str, str] | None = None,
        task_steps: int = 2,
        page_size: int | None = None,
    ) -> None:
        self.tree = tree if isinstance(tree, MockupTree) else MockupTree(tree)
        self.address = address
        self.port = port
        self.username = username
        self.password = password
        self.session_limit = session_limit
        self.require_auth = require_auth
        self.tls_cert = tls_cert
        self.task_steps = task_steps
        self.page_size = page_size
        self.faults = Faults()
        self.sessions: dict[str, str] = {}  # token -> session path
        self.sessions_created = 0
        self.requests: list[tuple[str, str]] = []  # (method, path?query)
        self.overlay: dict[str, dict[str, Any]] = {}
        self.etags: dict[str, int] = {}
        self.posts: list[tuple[str, Any]] = []
        self.tasks: dict[str, dict[str, Any]] = {}
        root = self.tree.get("/redfish/v1") or {}
        exp = (root.get("ProtocolFeaturesSupported") or {}).get("ExpandQuery") or {}
        self.expand = bool(exp.get("Levels") or exp.get("ExpandAll")) if expand is None else expand
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._ssl: ssl.SSLContext | None = None
        self._session_ids = itertools.count(1)
        self._hung: list[asyncio.Future[None]] = []
        self.inflight = 0
        self.max_inflight = 0

    # -- lifecycle --------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{self.address}:{self.port}"

    async def __aenter__(self) -> MockupBMC:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls_cert:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*self.tls_cert)
        return ctx

    async def start(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        self._ssl = self._ssl_context()
        self._site = web.TCPSite(self._runner, self.address, self.port, ssl_context=self._ssl, reuse_address=True)
        await self._site.start()
        if self.port == 0:
            server = self._site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        for f in self._hung:
            if not f.done():
                f.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def rotate_certificate(self, tls_cert: tuple[str, str]) -> None:
        """Serve a different certificate from now on (same address and port)."""
        self.tls_cert = tls_cert
        if self._ssl is not None:
            self._ssl.load_cert_chain(*tls_cert)

    # -- helpers ----------------------------------------------------------------------------------------------
    def _err(self, status: int, message_id: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
        body = {"error": {"code": message_id, "message": message,
                          "@Message.ExtendedInfo": [{"MessageId": message_id, "Message": message}]}}
        return web.json_response(body, status=status, headers=headers)

    def _authorized(self, request: web.Request) -> bool:
        token = request.headers.get("X-Auth-Token")
        if token and token in self.sessions:
            return True
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic ") and not self.faults.refuse_basic:
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
            return user == self.username and pw == self.password
        return False

    def doc(self, path: str) -> dict[str, Any] | None:
        k = U.key(path)
        base = self.tree.get(path)
        if k in self.overlay:
            merged = copy.deepcopy(base) if base else {}
            _deep_merge(merged, self.overlay[k])
            base = merged
        if base is None:
            return None
        tag = self.etags.get(k)
        if tag is not None:
            base = dict(base)
            base["@odata.etag"] = f'W/"{tag}"'
        return base

    def etag(self, path: str) -> str:
        k = U.key(path)
        d = self.doc(path) or {}
        return d.get("@odata.etag") or f'W/"{self.etags.get(k, 0)}"'

    def bump(self, path: str) -> None:
        k = U.key(path)
        self.etags[k] = self.etags.get(k, 0) + 1

    # -- request handling -------------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            return await self._handle_inner(request)
        finally:
            self.inflight -= 1

    async def _handle_inner(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.requests.append((request.method, request.path_qs))
        f = self.faults
        if f.applies(path):
            if f.hang:
                fut = asyncio.get_running_loop().create_future()
                self._hung.append(fut)
                try:
                    await fut
                except asyncio.CancelledError:
                    pass
                raise web.HTTPServiceUnavailable()
            if f.close:
                if request.transport is not None:
                    request.transport.close()
                raise web.HTTPServiceUnavailable()
            if f.slow:
                await asyncio.sleep(f.slow)
            if f.throttle > 0:
                f.throttle -= 1
                headers = {"Retry-After": f.retry_after} if f.retry_after is not None else None
                return self._err(f.throttle_status, "Base.1.8.ServiceTemporarilyUnavailable",
                                 "The service is temporarily unavailable; retry later.", headers)
        norm = U.normalize(path)
        if U.key(norm) in ("/redfish", "/redfish/v1") and request.method == "GET":
            return self._json(self.doc("/redfish/v1") or {}, request)
        sessions_path = "/redfish/v1/sessionservice/sessions"
        if request.method == "POST" and U.key(norm) == sessions_path:
            return await self._login(request)
        if self.require_auth and not self._authorized(request):
            return self._err(401, "Base.1.8.NoValidSession", "There is no valid session established.")
        if request.method == "DELETE" and U.key(norm).startswith(sessions_path + "/"):
            for tok, sp in list(self.sessions.items()):
                if U.key(sp) == U.key(norm):
                    del self.sessions[tok]
                    return web.Response(status=204)
            return self._err(404, "Base.1.8.ResourceMissingAtURI", "no such session")
        if request.method == "GET":
            return self._get(request, norm)
        if request.method == "PATCH":
            return await self._patch(request, norm)
        if request.method == "POST":
            return await self._post(request, norm)
        return self._err(405, "Base.1.8.OperationNotAllowed", "method not allowed")

    def _json(self, doc: Any, request: web.Request, status: int = 200, headers: dict[str, str] | None = None
              ) -> web.Response:
        body = json.dumps(doc)
        if self.faults.bad_json and self.faults.applies(request.path):
            body = body[: max(1, len(body) // 2)]  # truncated: not JSON
        hdrs = dict(headers or {})
        if isinstance(doc, dict) and doc.get("@odata.etag"):
            hdrs.setdefault("ETag", str(doc["@odata.etag"]))
        return web.Response(text=body, status=status, content_type="application/json", headers=hdrs)

    async def _login(self, request: web.Request) -> web.Response:
        if self.faults.refuse_sessions or len(self.sessions) >= self.session_limit:
            return self._err(
                400, "IDRAC.2.8.RAC0218",
                "The maximum number of user sessions is reached.",
            )
        try:
            body = await request.json()
        except ValueError:
            return self._err(400, "Base.1.8.MalformedJSON", "malformed JSON")
        if body.get("UserName") != self.username or body.get("Password") != self.password:
            return self._err(401, "Base.1.8.ResourceAtUriUnauthorized", "Login failed.")
        sid = next(self._session_ids)
        token = base64.b16encode(f"tok{sid}-{id(self)}".encode()).decode()
        spath = f"/redfish/v1/SessionService/Sessions/{sid}"
        self.sessions[token] = spath
        self.sessions_created += 1
        doc = {"@odata.id": spath, "Id": str(sid), "UserName": self.username}
        return web.json_response(doc, status=201, headers={"X-Auth-Token": token, "Location": spath})

    def _get(self, request: web.Request, norm: str) -> web.Response:
        k = U.key(norm)
        if k in self.tasks:
            t = self.tasks[k]
            t["polls"] += 1
            if t.get("dell_job"):  # iDRAC: the task monitor goes away, the job under Managers/.../Jobs remains
                job = t["dell_job"]
                if t["polls"] >= 2:
                    self.overlay[U.key(job)] = {"@odata.id": job, "Id": job.rsplit("/", 1)[-1],
                                                "JobState": t["final"], "Message": f"Job {t['final']}"}
                    return self._err(404, "Base.1.8.ResourceMissingAtURI", "task gone")
                self.overlay[U.key(job)] = {"@odata.id": job, "Id": job.rsplit("/", 1)[-1], "JobState": "Running",
                                            "PercentComplete": 10}
                return self._json(dict(t["doc"], TaskState="Running"), request, status=202)
            if t["polls"] < self.task_steps:
                running = dict(t["doc"], TaskState="Running", PercentComplete=50)
                return self._json(running, request, status=202, headers={"Location": norm})
            return self._json(dict(t["doc"], TaskState=t["final"], PercentComplete=100), request)
        if k.startswith("/redfish/v1/sessionservice/sessions/"):
            for sp in self.sessions.values():
                if U.key(sp) == k:
                    return self._json({"@odata.id": sp, "UserName": self.username}, request)
        found = self.doc(norm)
        if found is None:
            return self._err(404, "Base.1.8.ResourceMissingAtURI", f"The resource at the URI {norm} was not found.")
        doc: dict[str, Any] = found
        q = request.query.get("$expand")
        members = doc.get("Members")
        if q and self.expand and isinstance(members, list):
            doc = dict(doc)
            doc["Members"] = [self.doc(U.odata_id(m) or "") or m for m in members]
        if "$skip" in request.query and not self.page_size and isinstance(doc.get("Members"), list):
            # Captured trees keep every member on the first page *and* the BMC's nextLink: serve the rest.
            doc = dict(doc)
            doc["Members"] = doc["Members"][int(request.query["$skip"]):]
            doc.pop("Members@odata.nextLink", None)
        elif self.page_size and isinstance(doc.get("Members"), list):
            skip = int(request.query.get("$skip", "0"))
            allm = doc["Members"]
            doc = dict(doc)
            doc["Members"] = allm[skip: skip + self.page_size]
            if skip + self.page_size < len(allm):
                doc["Members@odata.nextLink"] = f"{norm}?$skip={skip + self.page_size}"
        return self._json(doc, request)

    async def _patch(self, request: web.Request, norm: str) -> web.Response:
        doc = self.doc(norm)
        if doc is None:
            return self._err(404, "Base.1.8.ResourceMissingAtURI", "not found")
        im = request.headers.get("If-Match")
        if im is not None and (self.faults.etag_broken or im not in (self.etag(norm), "*")):
            return self._err(412, "Base.1.8.PreconditionFailed", "The ETag supplied did not match the ETag "
                             "required to change this resource.")
        try:
            body = await request.json()
        except ValueError:
            return self._err(400, "Base.1.8.MalformedJSON", "malformed JSON")
        _deep_merge(self.overlay.setdefault(U.key(norm), {}), body)
        self.bump(norm)
        self.posts.append((f"PATCH {norm}", body))
        return web.Response(status=204)

    async def _post(self, request: web.Request, norm: str) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return self._err(400, "Base.1.8.MalformedJSON", "malformed JSON")
        self.posts.append((norm, body))
        low = U.key(norm)
        if low.endswith("/actions/computersystem.reset"):
            system = norm.rsplit("/Actions", 1)[0]
            sdoc = self.doc(system) or {}
            allowed = ((sdoc.get("Actions") or {}).get("#ComputerSystem.Reset") or {}).get(
                "ResetType@Redfish.AllowableValues")
            rt = str(body.get("ResetType"))
            if allowed and rt not in allowed:
                return self._err(400, "Base.1.8.ActionParameterValueNotInList",
                                 f"The value {rt} for ResetType is not in the list of acceptable values.")
            state = {"On": "On", "ForceOn": "On", "ForceOff": "Off", "GracefulShutdown": "Off",
                     "PushPowerButton": None}.get(rt, sdoc.get("PowerState", "On"))
            if state is None:
                state = "Off" if sdoc.get("PowerState") == "On" else "On"
            _deep_merge(self.overlay.setdefault(U.key(system), {}), {"PowerState": state})
            self.bump(system)
            return web.Response(status=204)
        if low.endswith("/actions/manager.reset"):
            return web.Response(status=204)
        if "/actions/virtualmedia.insertmedia" in low or "/actions/virtualmedia.ejectmedia" in low:
            vm = norm.rsplit("/Actions", 1)[0]
            inserted = "insertmedia" in low
            _deep_merge(self.overlay.setdefault(U.key(vm), {}),
                        {"Inserted": inserted, "Image": body.get("Image") if inserted else None})
            return web.Response(status=204)
        if low.endswith("/actions/updateservice.simpleupdate") or low.endswith("/actions/test.longtask"):
            tid = f"JID_{len(self.tasks) + 1:012d}"
            tpath = f"/redfish/v1/TaskService/Tasks/{tid}"
            self.tasks[U.key(tpath)] = {"polls": 0, "final": body.get("final", "Completed"),
                                        "doc": {"@odata.id": tpath, "Id": tid, "TaskState": "Running"}}
            if body.get("dell_job"):
                self.tasks[U.key(tpath)]["dell_job"] = f"/redfish/v1/Managers/iDRAC.Embedded.1/Jobs/{tid}"
            return web.json_response({"@odata.id": tpath}, status=202, headers={"Location": tpath})
        return self._err(404, "Base.1.8.ActionNotSupported", f"The action {norm} is not supported.")


def _deep_merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_merge(dst[k], v)
        else:
            dst[k] = v


class BMCFleet:
    """Several MockupBMCs on consecutive loopback addresses (``base_address`` + i), one port each."""

    def __init__(self, trees: list[str | Path | MockupTree], base_address: str = "127.13.0.1", **kw: Any) -> None:
        import ipaddress

        base = ipaddress.ip_address(base_address)
        cache: dict[str, MockupTree] = {}
        self.bmcs: list[MockupBMC] = []
        for i, t in enumerate(trees):
            if not isinstance(t, MockupTree):
                t = cache.setdefault(str(t), MockupTree(t))
            self.bmcs.append(MockupBMC(t, address=str(base + i), **kw))

    async def __aenter__(self) -> BMCFleet:
        await asyncio.gather(*(b.start() for b in self.bmcs))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(b.stop() for b in self.bmcs))


def temp_cert_dir() -> str:
    return tempfile.mkdtemp(prefix="redfleet-certs-")
