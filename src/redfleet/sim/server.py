"""The HTTP side: one aiohttp low-level handler for every simulated BMC, dispatching on the local address of the
connection. Auth, query options ($expand, $select, only, $skip/$top), ETags, actions, sessions, updates."""

from __future__ import annotations

import asyncio
import base64
import random
import re
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

import orjson
from aiohttp import web

from redfleet.sim import expand as expand_fast
from redfleet.sim.errors import JSON_HEADERS, error_response
from redfleet.sim.node import Replace
from redfleet.sim.template import JSON_TYPE

if TYPE_CHECKING:  # pragma: no cover
    from redfleet.sim.fleet import SimFleet
    from redfleet.sim.node import Session, SimNode

Doc = dict[str, Any]

OPEN_PATHS = frozenset({"/redfish", "/redfish/v1", "/redfish/v1/odata", "/redfish/v1/$metadata"})
READ_ONLY = frozenset(
    {
        "Id", "Members", "Members@odata.count", "Actions", "Links", "Status", "PowerState", "UUID", "SerialNumber",
        "Model", "Manufacturer", "PartNumber", "SKU", "FirmwareVersion", "BiosVersion", "Version", "Updateable",
        "SoftwareId", "ProcessorSummary", "MemorySummary", "ManagerType", "SystemType", "ChassisType",
    }
)
_MONITOR = re.compile(r"^/redfish/v1/TaskService/TaskMonitors/([^/]+)/?$", re.IGNORECASE)
_ENTRIES = re.compile(r"/LogServices/[^/]+/Entries$", re.IGNORECASE)


class RedfishHandler:
    def __init__(self, fleet: SimFleet) -> None:
        self.fleet = fleet
        self.rng = random.Random(fleet.config.seed)
        self.latency = fleet.latency
        # expand.py's collection shells, by (template, collection); None: that collection goes the generic way
        self._shells: dict[tuple[int, str, str, int], expand_fast.Shell | None] = {}

    # ---- entry ---------------------------------------------------------------------------------------------
    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        transport = request.transport
        sock = transport.get_extra_info("sockname") if transport is not None else None
        node = self.fleet.node_by_address(sock[0]) if sock else None
        if node is None:
            return web.Response(status=404, text="no simulated BMC at this address\n")
        if node.down:
            if transport is not None:
                transport.abort()
            return web.Response(status=503)
        if node.throttle_until:
            if time.monotonic() < node.throttle_until:
                if node.throttle_fraction >= 1.0 or self.rng.random() < node.throttle_fraction:
                    retry = max(1, int(node.throttle_until - time.monotonic()) + 1)
                    if node.throttle_status == 429:
                        return error_response(429, "ServiceTemporarilyUnavailable", retry,
                                              headers={"Retry-After": str(retry)})
                    return error_response(node.throttle_status or 503, "ServiceTemporarilyUnavailable", retry,
                                          headers={"Retry-After": str(retry)})
            else:
                node.throttle_until = 0.0
        delay = 0.0
        if self.latency is not None:
            delay += self.latency.sample(self.rng)
        if node.slow is not None:
            delay += node.slow.sample(self.rng)
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            resp = await self.dispatch(node, request)
            if node.bad_json and isinstance(resp, web.Response) and resp.status == 200 and resp.body:
                if node.bad_json >= 1.0 or self.rng.random() < node.bad_json:
                    body = bytes(resp.body)  # type: ignore[arg-type]
                    resp.body = body[: max(1, len(body) // 2)]
            return resp
        except web.HTTPException:
            raise
        except Exception as exc:  # a bug in the simulator: answer as a BMC would, keep serving
            self.fleet.log.exception("error serving %s %s on %s", request.method, request.path, node.name)
            return error_response(500, "GeneralError", related=[str(exc)[:200]])

    async def dispatch(self, node: SimNode, request: web.BaseRequest) -> web.StreamResponse:
        raw = request.raw_path
        path, _, query = raw.partition("?")
        path = unquote(path)
        if "//" in path:
            path = re.sub("/{2,}", "/", path)
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        method = request.method
        session: Session | None = None
        open_path = path in OPEN_PATHS or (node.flavor.case_insensitive and path.lower() in OPEN_PATHS)
        is_login = method == "POST" and path.lower() == node.facts.session_collection.lower()
        if not (open_path and method in ("GET", "HEAD")) and not is_login:
            auth = self._authenticate(node, request)
            if isinstance(auth, web.StreamResponse):
                return auth
            session = auth
        dyn_resp = await node.dyn.handle(request, path)
        if dyn_resp is not None:
            return dyn_resp
        if method in ("GET", "HEAD"):
            return self.get(node, path, query, method == "HEAD")
        if method == "POST":
            return await self.post(node, request, path)
        if method == "PATCH":
            return await self.patch(node, request, path)
        if method == "DELETE":
            return self.delete(node, path, session)
        if method == "PUT":
            return error_response(405, "OperationNotAllowed", headers={"Allow": "GET, HEAD, PATCH, POST, DELETE"})
        return error_response(405, "OperationNotAllowed")

    def _authenticate(self, node: SimNode, request: web.BaseRequest) -> Session | web.StreamResponse | None:
        token = request.headers.get("X-Auth-Token")
        if token:
            s = node.session_by_token(token)
            if s is not None:
                return s
            return self._unauthorized()
        header = request.headers.get("Authorization", "")
        if header[:6].lower() == "basic ":
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return self._unauthorized()
            if self.fleet.check_credentials(user, password, node):
                return None
        return self._unauthorized()

    def _unauthorized(self) -> web.Response:
        return error_response(401, "NoValidSession", headers={"WWW-Authenticate": 'Basic realm="RedfishService"'})

    # ---- GET -----------------------------------------------------------------------------------------------
    def _headers(self, node: SimNode, path: str, ctype: str) -> dict[str, str]:
        h = {"Content-Type": ctype, "OData-Version": "4.0", "Cache-Control": "no-cache"}
        if ctype == JSON_TYPE:
            h["ETag"] = node.etag(path)
            h["Allow"] = node.allow(path)
        return h

    def get(self, node: SimNode, path: str, query: str, head: bool = False) -> web.StreamResponse:
        out = self.answer_get(node, path, query)
        if isinstance(out, web.StreamResponse):
            return out
        body, ctype, canon = out
        return web.Response(body=None if head else body, headers=self._headers(node, canon, ctype))

    def answer_get(self, node: SimNode, path: str, query: str) -> tuple[bytes, str, str] | web.StreamResponse:
        """A GET of ``path`` with ``query``: (body, content type, canonical path) for a 200, else the response.

        Shared by the aiohttp handler and the fast path (fastpath.py), so both send the same bytes. The whole
        response is rendered at one simulated instant (``SimFleet.instant``)."""
        fleet = self.fleet
        if fleet.instant is not None:
            return self._answer_get(node, path, query)
        fleet.instant = node.now()
        try:
            return self._answer_get(node, path, query)
        finally:
            fleet.instant = None

    def _answer_get(self, node: SimNode, path: str, query: str) -> tuple[bytes, str, str] | web.StreamResponse:
        tpl = node.template
        m = _MONITOR.match(path)
        if m:
            return self._task_monitor(node, m.group(1))
        sess = node.session_by_path(path) if path.lower().startswith(node.facts.session_collection.lower() + "/") \
            else None
        if sess is not None:
            return self._json(node, sess.path, node.session_doc(sess))
        canon = node.resolve(path)
        if canon is None or not node.visible(canon):
            return error_response(404, "ResourceMissingAtURI", path)
        if not query and not _ENTRIES.search(canon):
            out = node.render_bytes(canon)
            if out is None:
                return error_response(404, "ResourceMissingAtURI", path)
            return out[0], out[1], canon
        params = dict(parse_qsl(query, keep_blank_values=True))
        res = tpl.resources.get(canon)
        if res is not None and res.ctype != JSON_TYPE:
            return res.body, res.ctype, canon
        if res is not None and len(params) == 1 and "$expand" in params:
            body = self._leaf_expand(node, canon, params["$expand"])
            if body is not None:
                return body, JSON_TYPE, canon
        doc = node.render_doc(canon)
        if doc is None:
            return error_response(404, "ResourceMissingAtURI", path)
        facts = node.facts
        if "only" in params:
            if not facts.only_supported:
                return error_response(400, "QueryNotSupported")
            members = doc.get("Members")
            if isinstance(members, list) and len(members) == 1 and isinstance(members[0], dict):
                target = node.resolve(str(members[0].get("@odata.id", "")))
                if target and node.visible(target):
                    canon = target
                    doc = node.render_doc(target) or doc
        if "Members" in doc and isinstance(doc["Members"], list):
            err = self._page(node, canon, doc, params)
            if err is not None:
                return err
        expand = params.get("$expand")
        seen: set[str] = set()
        if expand is not None:
            err2 = self._expand(node, doc, expand, seen)
            if err2 is not None:
                return err2
        select = params.get("$select")
        if select is not None:
            if not facts.select_supported:
                return error_response(400, "QueryNotSupported")
            keep = {s.strip().split("/")[0] for s in select.split(",") if s.strip()}
            doc = {k: v for k, v in doc.items() if k in keep or k.startswith("@odata.")}
        return self._json_body(node, canon, doc, seen), JSON_TYPE, canon

    def _leaf_expand(self, node: SimNode, canon: str, expand: str) -> bytes | None:
        """The bytes of an $expand of ``canon`` compiled by expand.py, when it can make them (else None)."""
        if _ENTRIES.search(canon):
            return None
        parsed = expand_fast.parse(node, expand)
        if parsed is None:
            return None
        key = (id(node.template), canon, *parsed)
        if key in self._shells:
            shell = self._shells[key]
        else:
            shell = self._shells[key] = expand_fast.compile_shell(node.template, canon, *parsed,
                                                                  node.facts.session_collection)
        if shell is None or not expand_fast.can_use(node, canon, shell):
            return None
        mode = parsed[0]

        def generic(path: str, levels: int) -> bytes | None:
            sub = self._sub(node, path, mode, levels, set())
            return None if sub is None else orjson.dumps(sub)

        body = expand_fast.render(node, shell, generic)
        if body is None:
            return None
        return self._identity(node, canon, body, set(shell.seen))

    def _json_body(self, node: SimNode, path: str, doc: Doc, idents: set[str] | None = None) -> bytes:
        return self._identity(node, path, orjson.dumps(doc), idents)

    def _identity(self, node: SimNode, path: str, body: bytes, idents: set[str] | None) -> bytes:
        res = node.template.resources.get(path)
        found = set(res.idents) if res is not None else set()
        if idents:
            found |= idents
        if found:
            body = node.apply_identity(body, tuple(sorted(found, key=len, reverse=True)))
        return body

    def _json(self, node: SimNode, path: str, doc: Doc, status: int = 200, head: bool = False,
              extra: dict[str, str] | None = None, idents: set[str] | None = None) -> web.Response:
        body = self._json_body(node, path, doc, idents)
        h = self._headers(node, path, JSON_TYPE)
        if extra:
            h.update(extra)
        return web.Response(status=status, body=None if head else body, headers=h)

    def _page(self, node: SimNode, path: str, doc: Doc, params: dict[str, str]) -> web.Response | None:
        members = doc["Members"]
        try:
            skip = int(params.get("$skip", "0") or 0)
            top = int(params["$top"]) if "$top" in params else None
        except ValueError:
            bad = "$skip" if not params.get("$skip", "0").isdigit() else "$top"
            return error_response(400, "QueryParameterValueTypeError", params.get(bad), bad)
        if skip < 0 or (top is not None and top < 0):
            return error_response(400, "QueryParameterOutOfRange", skip, "$skip", "0-")
        page = node.flavor.log_page_size if _ENTRIES.search(path) else None
        limit = top if top is not None else page
        if page is not None and limit is not None and limit > page:
            limit = page
        end = len(members) if limit is None else min(len(members), skip + limit)
        doc["Members@odata.count"] = len(members)
        doc["Members"] = members[skip:end]
        if end < len(members):
            if top is None and page is not None:
                doc["Members@odata.nextLink"] = f"{path}?$skip={end}"
            elif top is not None and end - skip < top:
                doc["Members@odata.nextLink"] = f"{path}?$skip={end}&$top={top - (end - skip)}"
        return None

    def _expand(self, node: SimNode, doc: Doc, expand: str, seen: set[str]) -> web.Response | None:
        facts = node.facts
        if facts.expand_max_levels == 0:
            return error_response(400, "QueryNotSupported")
        mode, levels = expand, 1
        mm = re.match(r"^([.*~])(?:\(\$levels=(\d+)\))?$", expand.strip())
        if not mm:
            return error_response(400, "QueryParameterValueTypeError", expand, "$expand")
        mode = mm.group(1)
        if mode not in facts.expand_modes:
            return error_response(400, "QueryNotSupported")
        if mm.group(2):
            levels = int(mm.group(2))
            if levels < 1 or levels > facts.expand_max_levels:
                return error_response(400, "QueryParameterOutOfRange", levels, "$levels",
                                      f"1-{facts.expand_max_levels}")
        self._expand_into(node, doc, mode, levels, False, seen)
        return None

    def _expand_into(self, node: SimNode, obj: Any, mode: str, levels: int, in_links: bool, seen: set[str]) -> Any:
        if levels <= 0:
            return obj
        if isinstance(obj, dict):
            for key, value in list(obj.items()):
                if key.startswith("@") or key == "Actions" or key.endswith("@odata.nextLink"):
                    continue
                links = in_links or key in ("Links", "RelatedItem")
                if isinstance(value, dict):
                    if len(value) == 1 and "@odata.id" in value and key != "Oem":  # a bare link
                        if (mode == "*") or (mode == "." and not links) or (mode == "~" and links):
                            sub = self._sub(node, str(value["@odata.id"]), mode, levels - 1, seen)
                            if sub is not None:
                                obj[key] = sub
                    else:
                        self._expand_into(node, value, mode, levels, links, seen)
                elif isinstance(value, list):
                    expand_it = (mode == "*") or (mode == "." and not links) or (mode == "~" and links)
                    for i, item in enumerate(value):
                        if not isinstance(item, dict):
                            continue
                        if len(item) == 1 and "@odata.id" in item:
                            if expand_it:
                                sub = self._sub(node, str(item["@odata.id"]), mode, levels - 1, seen)
                                if sub is not None:
                                    value[i] = sub
                        else:
                            self._expand_into(node, item, mode, levels, links, seen)
        return obj

    def _sub(self, node: SimNode, uri: str, mode: str, levels: int, seen: set[str]) -> Any:
        if "?" in uri or "#" in uri:
            uri = uri.split("?", 1)[0].split("#", 1)[0]
        canon = node.resolve(uri)
        if canon is None or not node.visible(canon) or "/JsonSchemas" in canon or "/Registries" in canon:
            return None
        if node.sessions:
            sess = node.session_by_path(canon)
            if sess is not None:
                return node.session_doc(sess)
        if levels <= 0:
            # a leaf: embed the member exactly as a GET of it answers (identity and ETag applied), no re-parse
            out = node.render_bytes(canon)
            if out is None or out[1] != JSON_TYPE:
                return None
            return orjson.Fragment(out[0])
        doc = node.render_doc(canon)
        if doc is None:
            return None
        res = node.template.resources.get(canon)
        if res is not None and res.idents:
            seen.update(res.idents)
        self._expand_into(node, doc, mode, levels, False, seen)
        return doc

    def _task_monitor(self, node: SimNode, tid: str) -> web.Response:
        path = node.task_for_monitor(tid)
        if path is None:
            return error_response(404, "ResourceMissingAtURI", f"/redfish/v1/TaskService/TaskMonitors/{tid}")
        doc = node.render_doc(path) or {}
        if doc.get("TaskState") in ("New", "Pending", "Running", "Starting", "Stopping", "Suspended"):
            return self._json(node, path, doc, status=202,
                              extra={"Location": f"/redfish/v1/TaskService/TaskMonitors/{tid}", "Retry-After": "1"})
        return self._json(node, path, doc, status=200)

    # ---- PATCH ---------------------------------------------------------------------------------------------
    async def _body(self, request: web.BaseRequest) -> Doc | web.Response:
        return self.parse_body(await request.read())

    @staticmethod
    def parse_body(raw: bytes) -> Doc | web.Response:
        if not raw.strip():
            return {}
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return error_response(400, "MalformedJSON")
        if not isinstance(value, dict):
            return error_response(400, "MalformedJSON")
        return value

    async def patch(self, node: SimNode, request: web.BaseRequest, path: str) -> web.StreamResponse:
        canon = node.resolve(path)
        if canon is None or not node.visible(canon):
            return error_response(404, "ResourceMissingAtURI", path)
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if_match = request.headers.get("If-Match")
        current_etag = node.etag(canon)
        if if_match is not None and if_match.strip() != "*":
            tags = [t.strip() for t in if_match.split(",")]
            weakless = current_etag[2:] if current_etag.startswith("W/") else current_etag
            if current_etag not in tags and weakless not in tags:
                return error_response(412, "PreconditionFailed", headers={"ETag": current_etag})
        current = node.render_doc(canon) or {}
        facts = node.facts
        if canon == facts.bios_settings_path:
            return self._patch_bios_settings(node, canon, body)
        if canon == facts.bios_path:
            return error_response(400, "PropertyNotWritable", "Attributes", related=["#/Attributes"])
        problems: list[web.Response] = []
        self._validate(current, body, "", problems)
        if problems:
            return problems[0]
        changes = {k: v for k, v in body.items() if not k.startswith("@")}
        if "Password" in changes and current.get("@odata.type", "").startswith("#ManagerAccount."):
            password = changes.pop("Password")
            if not isinstance(password, str) or not password:
                return error_response(400, "PropertyValueTypeError", "<hidden>", "Password")
            if current.get("UserName") == self.fleet.config.user:
                node.password = password  # the fleet's account on this BMC: new credentials from now on
            node.bump(canon)
        if changes:
            node.update_doc(canon, changes)
        doc = node.render_doc(canon) or {}
        return self._json(node, canon, doc)

    def _validate(self, current: Doc, patch: Doc, prefix: str, problems: list[web.Response]) -> None:
        for key, value in patch.items():
            if key.startswith("@"):
                continue
            where = f"{prefix}/{key}"
            if key not in current:
                problems.append(error_response(400, "PropertyUnknown", key, related=[f"#{where}"]))
                return
            if key in READ_ONLY or key.startswith("@odata.") or key.endswith("@odata.count"):
                problems.append(error_response(400, "PropertyNotWritable", key, related=[f"#{where}"]))
                return
            allowed = current.get(f"{key}@Redfish.AllowableValues")
            if isinstance(allowed, list) and value not in allowed:
                problems.append(error_response(400, "PropertyValueNotInList", value, key, related=[f"#{where}"]))
                return
            cur = current[key]
            if key == "BootSourceOverrideEnabled" and value not in ("Disabled", "Once", "Continuous"):
                problems.append(error_response(400, "PropertyValueNotInList", value, key, related=[f"#{where}"]))
                return
            if isinstance(cur, dict):
                if not isinstance(value, dict):
                    problems.append(error_response(400, "PropertyValueTypeError", value, key, related=[f"#{where}"]))
                    return
                self._validate(cur, value, where, problems)
            elif isinstance(cur, str) and not isinstance(value, str) and value is not None:
                problems.append(error_response(400, "PropertyValueTypeError", value, key, related=[f"#{where}"]))
                return
            elif isinstance(cur, bool) and not isinstance(value, bool):
                problems.append(error_response(400, "PropertyValueTypeError", value, key, related=[f"#{where}"]))
                return

    def _patch_bios_settings(self, node: SimNode, canon: str, body: Doc) -> web.Response:
        attrs = body.get("Attributes")
        if not isinstance(attrs, dict) or not attrs:
            return error_response(400, "PropertyMissing", "Attributes")
        current = (node.render_doc(node.facts.bios_path or "") or {}).get("Attributes") or {}
        for k, v in attrs.items():
            if k not in current:
                return error_response(400, "PropertyUnknown", k, related=[f"#/Attributes/{k}"])
            cur = current[k]
            if isinstance(cur, bool) != isinstance(v, bool) or (
                isinstance(cur, (int, float)) and not isinstance(v, (int, float))
            ) or (isinstance(cur, str) and not isinstance(v, str)):
                return error_response(400, "PropertyValueTypeError", v, k, related=[f"#/Attributes/{k}"])
        patch = node.patches.setdefault(canon, {})
        if not isinstance(patch.get("Attributes"), Replace):
            patch["Attributes"] = Replace()
        patch["Attributes"].update(attrs)
        node.bump(canon)
        node.dyn.on_resource_changed(canon, {"Attributes": attrs})
        extra: dict[str, str] = {}
        apply_time = body.get("@Redfish.SettingsApplyTime")
        status = 200
        if node.flavor.bios_via_job and isinstance(apply_time, dict) and apply_time.get("ApplyTime"):
            job = node.create_job(canon)
            extra["Location"] = job
            status = 202
        msg = {"@Message.ExtendedInfo": [
            {"MessageId": "Base.1.8.Success", "Message": "The request completed successfully.",
             "MessageArgs": [], "Severity": "OK", "MessageSeverity": "OK", "Resolution": "None"}]}
        return self._json(node, canon, msg, status=status, extra=extra)

    # ---- DELETE --------------------------------------------------------------------------------------------
    def delete(self, node: SimNode, path: str, session: Session | None) -> web.StreamResponse:
        sess = node.session_by_path(path)
        if sess is not None:
            node.drop_session(sess)
            return web.Response(status=204, headers={"OData-Version": "4.0"})
        canon = node.resolve(path)
        if canon is not None and canon in node.created:
            jid = canon.rsplit("/", 1)[-1]
            if jid in node.jobs:
                for p in [p for p in node.created if p.endswith("/" + jid)]:
                    node.remove_resource(p)
                node.jobs.pop(jid, None)
            else:
                node.remove_resource(canon)
            return web.Response(status=204, headers={"OData-Version": "4.0"})
        if canon is None:
            return error_response(404, "ResourceMissingAtURI", path)
        return error_response(405, "OperationNotAllowed", headers={"Allow": "GET, HEAD, PATCH"})

    # ---- POST ----------------------------------------------------------------------------------------------
    async def post(self, node: SimNode, request: web.BaseRequest, path: str) -> web.StreamResponse:
        facts = node.facts
        low = path.lower()
        if low == facts.session_collection.lower():
            return await self._login(node, request)
        is_push = bool(facts.http_push_uri) and low == str(facts.http_push_uri).rstrip("/").lower()
        if facts.multipart_push_uri and low == facts.multipart_push_uri.rstrip("/").lower() and (
            request.content_type.startswith("multipart/") or not is_push
        ):
            return await self._multipart_update(node, request)
        if is_push:
            return await self._push_update(node, request)
        if "/actions/" in low:
            return await self._action(node, request, path)
        mgr = facts.manager_path or ""
        if node.flavor.bios_via_job and low in (
            f"{mgr}/jobs".lower(), f"{mgr}/oem/dell/jobs".lower(), "/redfish/v1/jobservice/jobs"
        ):
            body = await self._body(request)
            if isinstance(body, web.Response):
                return body
            target = body.get("TargetSettingsURI")
            if not isinstance(target, str):
                return error_response(400, "CreateFailedMissingReqProperties", "TargetSettingsURI")
            canon_target = node.resolve(target)
            if canon_target is None:
                return error_response(400, "PropertyValueNotInList", target, "TargetSettingsURI")
            job = node.create_job(canon_target)
            return web.Response(status=200, headers={**JSON_HEADERS, "Location": job},
                                body=orjson.dumps({"@Message.ExtendedInfo": [
                                    {"MessageId": "Base.1.8.Success", "Message": "The request completed "
                                     "successfully.", "Severity": "OK", "MessageSeverity": "OK"}]}))
        canon = node.resolve(path)
        if canon is None:
            return error_response(404, "ResourceMissingAtURI", path)
        return error_response(405, "OperationNotAllowed", headers={"Allow": "GET, HEAD, PATCH"})

    async def _login(self, node: SimNode, request: web.BaseRequest) -> web.Response:
        return self.login(node, self.parse_body(await request.read()))

    def login(self, node: SimNode, body: Doc | web.Response) -> web.Response:
        """POST to the session collection (also answered by the fast path, with the body it read)."""
        if isinstance(body, web.Response):
            return body
        user, password = body.get("UserName"), body.get("Password")
        if not isinstance(user, str) or not isinstance(password, str):
            return error_response(400, "CreateFailedMissingReqProperties", "UserName" if not user else "Password")
        if not self.fleet.check_credentials(user, password, node):
            return error_response(401, "ResourceAtUriUnauthorized", node.facts.session_collection, "Unauthorized",
                                  headers={"WWW-Authenticate": 'Basic realm="RedfishService"'})
        s = None if node.refuse_sessions else node.new_session(user)
        if s is None:
            return error_response(503, "SessionLimitExceeded", headers={"Retry-After": "30"})
        return self._json(node, s.path, node.session_doc(s), status=201,
                          extra={"X-Auth-Token": s.token, "Location": s.path})

    def _find_action(self, node: SimNode, path: str) -> tuple[str, str, Doc] | None:
        """(action name, owning resource, action object) for an action target URI."""
        head, _, _tail = path.partition("/Actions/")
        if not _:
            idx = path.lower().find("/actions/")
            head = path[:idx]
        owner = node.resolve(head)
        if owner is None or not node.visible(owner):
            return None
        doc = node.template.doc(owner) or node.created.get(owner) or {}
        actions = doc.get("Actions") or {}
        low = path.lower()
        found: list[tuple[str, Doc]] = []
        for key, value in actions.items():
            if key == "Oem" and isinstance(value, dict):
                for okey, ovalue in value.items():
                    if isinstance(ovalue, dict):
                        found.append((okey, ovalue))
            elif isinstance(value, dict):
                found.append((key, value))
        for key, value in found:
            target = str(value.get("target", "")).rstrip("/").lower()
            if target == low:
                return key.split("#")[-1], owner, value
        return None

    async def _action(self, node: SimNode, request: web.BaseRequest, path: str) -> web.StreamResponse:
        found = self._find_action(node, path)
        if found is None:
            return error_response(404, "ResourceMissingAtURI", path)
        name, owner, action = found
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        short = name.rsplit(".", 1)[-1]
        if name.endswith("ComputerSystem.Reset") and owner == node.facts.system_path:
            return self._reset(node, name, action, body)
        if short == "Reset" and not name.endswith("Manager.Reset"):  # other systems, chassis, HGX baseboard
            rt = body.get("ResetType")
            allowed = node.allowed_reset_types(action)
            if rt is None and allowed is not None:
                return error_response(400, "ActionParameterMissing", name, "ResetType")
            if allowed is not None and rt not in allowed:
                return error_response(400, "ActionParameterValueNotInList", rt, "ResetType", name,
                                      related=["#/ResetType"])
            node.append_log(f"{owner.rsplit('/', 1)[-1]} reset ({rt or 'default'}).")
            return web.Response(status=204, headers={"OData-Version": "4.0"})
        if name.endswith("Manager.Reset"):
            rt = body.get("ResetType", "GracefulRestart")
            allowed = node.allowed_reset_types(action)
            if allowed is not None and rt not in allowed:
                return error_response(400, "ActionParameterValueNotInList", rt, "ResetType", name)
            # answer first, then go down
            node.fleet.loop.call_soon(node.manager_reset)
            return web.Response(status=204, headers={"OData-Version": "4.0"})
        if name.endswith("UpdateService.SimpleUpdate"):
            return self._simple_update(node, body, name)
        if name.endswith("LogService.ClearLog"):
            coll = node.entries_collection(owner)
            for p in list(node.added.get(coll, [])):
                node.remove_resource(p)
            for m in node.template.members(coll):
                node.removed.add(node.template.find(m) or m)
            node.bump(coll)
            return web.Response(status=204, headers={"OData-Version": "4.0"})
        if name.endswith("ClearPending") and node.facts.bios_settings_path:
            node.patches.setdefault(node.facts.bios_settings_path, {})["Attributes"] = Replace()
            node.bump(node.facts.bios_settings_path)
            return web.Response(status=204, headers={"OData-Version": "4.0"})
        return web.Response(status=204, headers={"OData-Version": "4.0"})

    def _reset(self, node: SimNode, name: str, action: Doc, body: Doc) -> web.Response:
        rt = body.get("ResetType")
        allowed = node.allowed_reset_types(action)
        if rt is None:
            return error_response(400, "ActionParameterMissing", name, "ResetType")
        if allowed is not None and rt not in allowed:
            return error_response(400, "ActionParameterValueNotInList", rt, "ResetType", name,
                                  related=["#/ResetType"])
        node.reset(str(rt))
        return web.Response(status=204, headers={"OData-Version": "4.0"})

    def _simple_update(self, node: SimNode, body: Doc, name: str) -> web.Response:
        image = body.get("ImageURI")
        if not isinstance(image, str) or not image:
            return error_response(400, "ActionParameterMissing", name, "ImageURI")
        targets = body.get("Targets") or []
        if not isinstance(targets, list):
            return error_response(400, "PropertyValueTypeError", targets, "Targets")
        chosen = node.pick_firmware_target([str(t) for t in targets], image)
        return self._start_update(node, chosen, image)

    def _start_update(self, node: SimNode, targets: list[str], image: str) -> web.Response:
        path = node.create_task(f"Firmware update {image.rsplit('/', 1)[-1]}", node.flavor.task_seconds,
                                on_done=lambda: node.apply_firmware(targets, image))
        tid = path.rsplit("/", 1)[-1]
        monitor = f"/redfish/v1/TaskService/TaskMonitors/{tid}"
        doc = node.render_doc(path) or {}
        return self._json(node, path, doc, status=202, extra={"Location": monitor, "Retry-After": "1"})

    async def _multipart_update(self, node: SimNode, request: web.BaseRequest) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            return error_response(400, "ActionParameterMissing", "MultipartHttpPushUri", "UpdateFile")
        params: Doc = {}
        filename = None
        size = 0
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, web.BodyPartReader if hasattr(web, "BodyPartReader") else object):
                pass
            pname = getattr(part, "name", None)
            if pname == "UpdateParameters":
                raw = await part.read()  # type: ignore[union-attr]
                try:
                    params = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    return error_response(400, "MalformedJSON")
            elif pname in ("UpdateFile", "OemParameters") or getattr(part, "filename", None):
                if pname == "OemParameters":
                    await part.read()  # type: ignore[union-attr]
                    continue
                filename = getattr(part, "filename", None) or "image.bin"
                while True:
                    chunk = await part.read_chunk()  # type: ignore[union-attr]
                    if not chunk:
                        break
                    size += len(chunk)
            else:
                await part.read()  # type: ignore[union-attr]
        if filename is None:
            return error_response(400, "ActionParameterMissing", "MultipartHttpPushUri", "UpdateFile")
        targets = params.get("Targets") or []
        chosen = node.pick_firmware_target([str(t) for t in targets if isinstance(t, str)], filename)
        return self._start_update(node, chosen, filename)

    async def _push_update(self, node: SimNode, request: web.BaseRequest) -> web.Response:
        if request.content_type.startswith("multipart/"):
            return await self._multipart_update(node, request)
        async for _chunk in request.content.iter_chunked(1 << 16):  # images are large: stream, do not keep
            pass
        disp = request.headers.get("Content-Disposition", "")
        m = re.search(r'filename="?([^";]+)', disp)
        name = m.group(1) if m else f"image-{secrets.token_hex(2)}.bin"
        chosen = node.pick_firmware_target([], name)
        return self._start_update(node, chosen, name)
