"""Errors raised by the Redfish client, each one saying what went wrong with which BMC in words an operator can act on.

Every error is a :class:`RedfishError`; ``kind`` is a short stable token (``timeout``, ``unreachable``,
``auth``, ``session-limit``, ``certificate-changed``, ``malformed``, ``throttled``, ``not-found``, ``http``,
``task-failed``, ``unsupported``...) that fleet-wide reports, the store and the API can group by.
HTTP errors are classified from ``@Message.ExtendedInfo[].MessageId`` first (``Base.1.x.SessionLimitExceeded``,
``Base.1.x.InsufficientPrivilege``...), then from the status code.
"""

from __future__ import annotations

from typing import Any


class RedfishError(Exception):
    """Base class. ``bmc`` is the BMC's base URL, ``uri`` the resource involved (if any)."""

    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        bmc: str | None = None,
        uri: str | None = None,
        status: int | None = None,
        message_ids: list[str] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.bmc = bmc
        self.uri = uri
        self.status = status
        self.message_ids = list(message_ids or [])
        self.body = body

    def __str__(self) -> str:
        where = self.bmc or ""
        if self.uri:
            where = f"{where}{self.uri}" if where else self.uri
        return f"{where}: {self.message}" if where else self.message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: what fleet-wide reports print and store."""
        out: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.bmc:
            out["bmc"] = self.bmc
        if self.uri:
            out["uri"] = self.uri
        if self.status is not None:
            out["status"] = self.status
        if self.message_ids:
            out["message_ids"] = self.message_ids
        return out


class ConnectionFailed(RedfishError):
    """TCP connection refused/reset, DNS failure, or the BMC closed the connection mid-answer."""

    kind = "unreachable"


class RequestTimeout(RedfishError):
    """No (complete) answer within the timeout for that kind of resource."""

    kind = "timeout"


class TLSError(RedfishError):
    """The TLS handshake failed or the certificate did not verify against the CA bundle."""

    kind = "tls"


class CertificateChanged(TLSError):
    """The BMC presents a certificate whose fingerprint differs from the pinned one.

    Refused until an operator accepts the new fingerprint (``redfleet inventory URL --pin --accept-new-cert``
    or ``PinStore.put``)."""

    kind = "certificate-changed"

    def __init__(self, message: str, *, expected: str, presented: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.expected = expected
        self.presented = presented

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update(expected=self.expected, presented=self.presented)
        return out


class MalformedResponse(RedfishError):
    """The BMC answered 2xx with a body that is not the JSON object Redfish promises."""

    kind = "malformed"


class HTTPError(RedfishError):
    """A non-2xx answer not covered by a more specific class."""

    kind = "http"


class AuthenticationFailed(HTTPError):
    """401: wrong user name or password (or the account is locked)."""

    kind = "auth"


class InsufficientPrivilege(HTTPError):
    """403: the account lacks the privilege for this operation."""

    kind = "forbidden"


class SessionLimitExceeded(HTTPError):
    """The BMC refuses to open another session (iDRAC: 8 at most) and Basic auth was not allowed or failed too."""

    kind = "session-limit"


class NotFound(HTTPError):
    kind = "not-found"


class Throttled(HTTPError):
    """429/503 still answered after every retry allowed (each honouring Retry-After)."""

    kind = "throttled"


class PreconditionFailed(HTTPError):
    """412: the If-Match ETag did not match (the resource changed underneath)."""

    kind = "precondition-failed"


class ActionNotSupported(RedfishError):
    """The BMC does not offer the action or the value asked for (e.g. a ResetType not in AllowableValues)."""

    kind = "unsupported"


class TaskFailed(RedfishError):
    """A task monitor (or Dell job) ended in Exception/Killed/Cancelled/Failed."""

    kind = "task-failed"


class TaskTimeout(RedfishError):
    kind = "task-timeout"


def extended_info(body: Any) -> list[dict[str, Any]]:
    """The ``@Message.ExtendedInfo`` list of a Redfish error body (``{"error": {...}}``) or resource."""
    if not isinstance(body, dict):
        return []
    infos: list[dict[str, Any]] = []
    err = body.get("error")
    if isinstance(err, dict):
        ext = err.get("@Message.ExtendedInfo")
        if isinstance(ext, list):
            infos.extend(i for i in ext if isinstance(i, dict))
        elif isinstance(ext, dict):
            infos.append(ext)
        if not infos and (err.get("code") or err.get("message")):
            infos.append({"MessageId": err.get("code", ""), "Message": err.get("message", "")})
    ext = body.get("@Message.ExtendedInfo")
    if isinstance(ext, list):
        infos.extend(i for i in ext if isinstance(i, dict))
    return infos


def message_ids(body: Any) -> list[str]:
    return [str(i.get("MessageId")) for i in extended_info(body) if i.get("MessageId")]


def _short_id(message_id: str) -> str:
    """``Base.1.8.SessionLimitExceeded`` -> ``SessionLimitExceeded``; iDRAC ``IDRAC.2.8.RAC0218`` -> ``RAC0218``."""
    return message_id.rsplit(".", 1)[-1]


# MessageId (last segment) -> error class. Registries: DMTF Base, iDRAC (RACxxxx/SYSxxx), iLO (iLO.2.x.*).
_BY_MESSAGE_ID: dict[str, type[RedfishError]] = {
    "SessionLimitExceeded": SessionLimitExceeded,
    "RAC0218": SessionLimitExceeded,  # iDRAC: maximum number of user sessions is reached
    "NoValidSession": AuthenticationFailed,
    "AccessDenied": AuthenticationFailed,
    "ResourceAtUriUnauthorized": AuthenticationFailed,
    "LoginFailure": AuthenticationFailed,
    "InsufficientPrivilege": InsufficientPrivilege,
    "ResourceMissingAtURI": NotFound,
    "ResourceNotFound": NotFound,
    "PreconditionFailed": PreconditionFailed,
    "ActionNotSupported": ActionNotSupported,
    "ActionParameterNotSupported": ActionNotSupported,
    "ActionParameterValueNotInList": ActionNotSupported,
    "PropertyValueNotInList": ActionNotSupported,
    "OperationNotAllowed": ActionNotSupported,
    "ServiceTemporarilyUnavailable": Throttled,
    "ServiceInUnknownState": Throttled,
}

_BY_STATUS: dict[int, type[RedfishError]] = {
    401: AuthenticationFailed,
    403: InsufficientPrivilege,
    404: NotFound,
    405: ActionNotSupported,
    412: PreconditionFailed,
    429: Throttled,
    501: ActionNotSupported,
    503: Throttled,
}


def classify(status: int, body: Any) -> type[RedfishError]:
    """The error class for an HTTP error answer: by MessageId first, then by status."""
    for mid in message_ids(body):
        cls = _BY_MESSAGE_ID.get(_short_id(mid))
        if cls is not None:
            return cls
    return _BY_STATUS.get(status, HTTPError)


def http_error(status: int, body: Any, *, bmc: str | None, uri: str | None, method: str = "GET") -> RedfishError:
    """Build the classified error for a non-2xx answer, with the BMC's own words in the message."""
    cls = classify(status, body)
    infos = extended_info(body)
    said = "; ".join(
        f"{i.get('MessageId', '?')}: {i.get('Message', '').strip()}".rstrip(": ") for i in infos[:3]
    )
    msg = f"{method} answered HTTP {status}"
    if said:
        msg += f" ({said})"
    return cls(msg, bmc=bmc, uri=uri, status=status, message_ids=message_ids(body), body=body)
