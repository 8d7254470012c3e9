"""Redfish error bodies (``error.code`` + ``@Message.ExtendedInfo`` with Base registry MessageIds)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

# MessageId (without the registry prefix) -> (Severity, Message template, Resolution)
_BASE: dict[str, tuple[str, str, str]] = {
    "GeneralError": ("Critical", "A general error has occurred. See Resolution for information on how to resolve "
                     "the error.", "None."),
    "Success": ("OK", "The request completed successfully.", "None."),
    "Created": ("OK", "The resource was created successfully.", "None."),
    "ResourceNotFound": ("Critical", "The requested resource of type %1 named '%2' was not found.",
                         "Provide a valid resource identifier and resubmit the request."),
    "ResourceMissingAtURI": ("Critical", "The resource at the URI '%1' was not found.",
                             "Place a valid resource at the URI or correct the URI and resubmit the request."),
    "PropertyValueNotInList": ("Warning", "The value '%1' for the property %2 is not in the list of acceptable "
                               "values.", "Choose a value from the enumeration list that the implementation can "
                               "support and resubmit the request if the operation failed."),
    "PropertyUnknown": ("Warning", "The property %1 is not in the list of valid properties for the resource.",
                        "Remove the unknown property from the request body and resubmit the request if the "
                        "operation failed."),
    "PropertyNotWritable": ("Warning", "The property %1 is a read-only property and cannot be assigned a value.",
                            "Remove the property from the request body and resubmit the request if the operation "
                            "failed."),
    "PropertyValueTypeError": ("Warning", "The value '%1' for the property %2 is of a different type than the "
                               "property can accept.", "Correct the value for the property in the request body "
                               "and resubmit the request if the operation failed."),
    "ActionNotSupported": ("Critical", "The action %1 is not supported by the resource.",
                           "The action supplied cannot be resubmitted to the implementation."),
    "ActionParameterMissing": ("Critical", "The action %1 requires the parameter %2 to be present in the request "
                               "body.", "Supply the action with the required parameter in the request body when "
                               "the request is resubmitted."),
    "ActionParameterValueNotInList": ("Warning", "The value '%1' for the parameter %2 in the action %3 is not in "
                                      "the list of acceptable values.", "Choose a value from the enumeration list "
                                      "that the implementation can support and resubmit the request if the "
                                      "operation failed."),
    "ActionParameterUnknown": ("Warning", "The action %1 was submitted with the invalid parameter %2.",
                               "Correct the invalid parameter and resubmit the request if the operation failed."),
    "MalformedJSON": ("Critical", "The request body submitted was malformed JSON and could not be parsed by the "
                      "receiving service.", "Ensure that the request body is valid JSON and resubmit the request."),
    "NoValidSession": ("Critical", "There is no valid session established with the implementation.",
                       "Establish a session before attempting any operations."),
    "InsufficientPrivilege": ("Critical", "There are insufficient privileges for the account or credentials "
                              "associated with the current session to perform the requested operation.",
                              "Either abandon the operation or change the associated access rights and resubmit "
                              "the request if the operation failed."),
    "ResourceAtUriUnauthorized": ("Critical", "While accessing the resource at '%1', the service received an "
                                  "authorization error '%2'.", "Ensure that the appropriate access is provided for "
                                  "the service in order for it to access the URI."),
    "SessionLimitExceeded": ("Critical", "The session establishment failed due to the number of simultaneous "
                             "sessions exceeding the limit of the implementation.", "Reduce the number of other "
                             "sessions before trying to establish the session or increase the limit of "
                             "simultaneous sessions, if supported."),
    "PreconditionFailed": ("Critical", "The ETag supplied did not match the ETag required to change this resource.",
                           "Try the operation again using the appropriate ETag."),
    "PreconditionRequired": ("Critical", "A precondition header or annotation is required to change this resource.",
                             "Try the operation again using an If-Match or If-None-Match header and appropriate "
                             "ETag."),
    "ServiceTemporarilyUnavailable": ("Critical", "The service is temporarily unavailable.  Retry in %1 seconds.",
                                      "Wait for the indicated retry duration and retry the operation."),
    "ServiceInUnknownState": ("Critical", "The operation failed because the service is in an unknown state and can "
                              "no longer take incoming requests.", "Restart the service and resubmit the request "
                              "if the operation failed."),
    "OperationNotAllowed": ("Critical", "The HTTP method is not allowed on this resource.",
                            "None."),
    "OperationFailed": ("Warning", "An error occurred internal to the service as part of the overall request.  "
                        "Partial results may have been returned.", "Resubmit the request.  If the problem persists, "
                        "consider resetting the service or provider."),
    "QueryNotSupported": ("Warning", "Querying is not supported by the implementation.",
                          "Remove the query parameters and resubmit the request if the operation failed."),
    "QueryNotSupportedOnResource": ("Warning", "Querying is not supported on the requested resource.",
                                    "Remove the query parameters and resubmit the request if the operation failed."),
    "QueryParameterValueTypeError": ("Warning", "The value '%1' for the query parameter %2 is of a different type "
                                     "than the parameter can accept.", "Correct the value for the query parameter "
                                     "in the request and resubmit the request if the operation failed."),
    "QueryParameterOutOfRange": ("Warning", "The value '%1' for the query parameter %2 is out of range %3.",
                                 "Reduce the value for the query parameter to a value that is within range."),
    "ResourceInUse": ("Warning", "The change to the requested resource failed because the resource is in use or in "
                      "transition.", "Remove the condition and resubmit the request if the operation failed."),
    "CreateFailedMissingReqProperties": ("Critical", "The create operation failed because the required property %1 "
                                         "was missing from the request.", "Correct the body to include the "
                                         "required property with a valid value and resubmit the request if the "
                                         "operation failed."),
    "PropertyMissing": ("Warning", "The property %1 is a required property and must be included in the request.",
                        "Ensure that the property is in the request body and has a valid value and resubmit the "
                        "request if the operation failed."),
}

BASE_PREFIX = "Base.1.8"


def message(message_id: str, *args: Any, prefix: str = BASE_PREFIX, related: list[str] | None = None) -> dict:
    severity, text, resolution = _BASE.get(message_id, _BASE["GeneralError"])
    for i, arg in enumerate(args, 1):
        text = text.replace(f"%{i}", str(arg))
    msg: dict[str, Any] = {
        "@odata.type": "#Message.v1_1_1.Message",
        "MessageId": f"{prefix}.{message_id}",
        "Message": text,
        "MessageArgs": [str(a) for a in args],
        "MessageSeverity": severity,
        "Resolution": resolution,
    }
    if related:
        msg["RelatedProperties"] = related
    return msg


def error_body(message_id: str, *args: Any, prefix: str = BASE_PREFIX, related: list[str] | None = None,
               extra: list[dict] | None = None) -> dict:
    infos = [message(message_id, *args, prefix=prefix, related=related), *(extra or [])]
    return {
        "error": {
            "code": f"{prefix}.{'GeneralError' if message_id != 'GeneralError' and len(infos) > 1 else message_id}",
            "message": infos[0]["Message"] if len(infos) == 1 else
            "A general error has occurred. See ExtendedInfo for more information.",
            "@Message.ExtendedInfo": infos,
        }
    }


JSON_HEADERS = {"Content-Type": "application/json;charset=utf-8", "OData-Version": "4.0"}


def error_response(status: int, message_id: str, *args: Any, prefix: str = BASE_PREFIX,
                   related: list[str] | None = None, headers: dict[str, str] | None = None) -> web.Response:
    h = dict(JSON_HEADERS)
    if headers:
        h.update(headers)
    return web.Response(status=status, body=orjson.dumps(error_body(message_id, *args, prefix=prefix,
                                                                    related=related)), headers=h)
