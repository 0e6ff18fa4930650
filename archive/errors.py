"""Store errors, classified from what the storage backend raised.

fsspec backends surface errors differently (s3fs maps botocore errors to
PermissionError / FileNotFoundError / OSError, gcsfs raises HttpError with a
`code`, adlfs lets azure-core's HttpResponseError through with `status_code`,
aiohttp has `status`), so classification walks the exception and its causes
and reads whichever of those it finds. The retry policy decides from the class.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
from enum import Enum


class ErrorClass(str, Enum):
    THROTTLED = "throttled"          # 429, 503 SlowDown, ServerBusy
    SERVER = "server"                # other 5xx
    TIMEOUT = "timeout"
    CONNECTION = "connection"        # refused, reset, DNS
    AUTH = "auth"                    # 401/403: AccessDenied, invalid or expired credentials
    NOT_FOUND = "not_found"          # missing bucket or container
    CLIENT = "client"                # other 4xx: the request itself is wrong
    CONFLICT = "conflict"            # the key already holds other bytes: never retried, never overwritten
    UNKNOWN = "unknown"


TRANSIENT = frozenset({ErrorClass.THROTTLED, ErrorClass.SERVER, ErrorClass.TIMEOUT, ErrorClass.CONNECTION})

_CODES = {
    "slowdown": ErrorClass.THROTTLED, "throttling": ErrorClass.THROTTLED,
    "throttlingexception": ErrorClass.THROTTLED, "requestlimitexceeded": ErrorClass.THROTTLED,
    "toomanyrequests": ErrorClass.THROTTLED, "toomanyrequestsexception": ErrorClass.THROTTLED,
    "serverbusy": ErrorClass.THROTTLED, "ratelimitexceeded": ErrorClass.THROTTLED,
    "internalerror": ErrorClass.SERVER, "serviceunavailable": ErrorClass.THROTTLED,
    "requesttimeout": ErrorClass.TIMEOUT, "operationtimedout": ErrorClass.TIMEOUT,
    "accessdenied": ErrorClass.AUTH, "invalidaccesskeyid": ErrorClass.AUTH,
    "signaturedoesnotmatch": ErrorClass.AUTH, "expiredtoken": ErrorClass.AUTH,
    "invalidtoken": ErrorClass.AUTH, "authorizationfailure": ErrorClass.AUTH,
    "authenticationfailed": ErrorClass.AUTH, "authorizationpermissionmismatch": ErrorClass.AUTH,
    "nosuchbucket": ErrorClass.NOT_FOUND, "containernotfound": ErrorClass.NOT_FOUND,
    # two conditional writes of one key raced: S3 asks to retry, and the retry sees the winner
    "conditionalrequestconflict": ErrorClass.SERVER,
}
_ERRNOS = {
    errno.ECONNREFUSED: ErrorClass.CONNECTION, errno.ECONNRESET: ErrorClass.CONNECTION,
    errno.ECONNABORTED: ErrorClass.CONNECTION, errno.EPIPE: ErrorClass.CONNECTION,
    errno.ENETUNREACH: ErrorClass.CONNECTION, errno.EHOSTUNREACH: ErrorClass.CONNECTION,
    errno.ETIMEDOUT: ErrorClass.TIMEOUT, errno.EACCES: ErrorClass.AUTH,
    errno.EPERM: ErrorClass.AUTH, errno.ENOENT: ErrorClass.NOT_FOUND,
    errno.EBUSY: ErrorClass.THROTTLED, errno.EAGAIN: ErrorClass.THROTTLED,
}


def status_class(status: int) -> ErrorClass:
    if status in (429, 503):
        return ErrorClass.THROTTLED
    if status == 408:
        return ErrorClass.TIMEOUT
    if status >= 500:
        return ErrorClass.SERVER
    if status in (401, 403):
        return ErrorClass.AUTH
    if status == 404:
        return ErrorClass.NOT_FOUND
    if status >= 400:
        return ErrorClass.CLIENT
    return ErrorClass.UNKNOWN


def classify(exc: BaseException) -> ErrorClass:
    """The class of a store error, from the exception or the first cause that tells."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _classify_one(current)
        if found is not ErrorClass.UNKNOWN:
            return found
        current = current.__cause__ or current.__context__
    return ErrorClass.UNKNOWN


def _classify_one(exc: BaseException) -> ErrorClass:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError: the error code says most
        code = response.get("Error", {}).get("Code")
        if isinstance(code, str) and code.lower() in _CODES:
            return _CODES[code.lower()]
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(status, int):
            return status_class(status)
    for attr in ("error_code", "reason"):  # azure-core, gcsfs
        code = getattr(exc, attr, None)
        if isinstance(code, str) and code.lower() in _CODES:
            return _CODES[code.lower()]
    for attr in ("status", "status_code", "http_status", "code"):  # aiohttp, azure, gcsfs
        value = getattr(exc, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return status_class(value)
        if attr == "code" and isinstance(value, str) and value.lower() in _CODES:
            return _CODES[value.lower()]
    by_name = _NAMES.get(type(exc).__name__)
    if by_name is not None:
        return by_name
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, socket.timeout)):
        return ErrorClass.TIMEOUT
    if isinstance(exc, PermissionError):
        return ErrorClass.AUTH
    if isinstance(exc, FileNotFoundError):
        return ErrorClass.NOT_FOUND
    if isinstance(exc, ConnectionError):
        return ErrorClass.CONNECTION
    name = type(exc).__name__.lower()
    if "timeout" in name:
        return ErrorClass.TIMEOUT
    if "connect" in name:
        return ErrorClass.CONNECTION
    if isinstance(exc, OSError) and exc.errno in _ERRNOS:
        return _ERRNOS[exc.errno]
    return ErrorClass.UNKNOWN


# azure-core's exceptions, raised by adlfs, often without a status code.
_NAMES = {
    "ServiceRequestError": ErrorClass.CONNECTION,
    "ServiceRequestTimeoutError": ErrorClass.TIMEOUT,
    "ServiceResponseError": ErrorClass.CONNECTION,
    "ServiceResponseTimeoutError": ErrorClass.TIMEOUT,
    "ClientAuthenticationError": ErrorClass.AUTH,
    "ResourceNotFoundError": ErrorClass.NOT_FOUND,
}


_SECRETS = re.compile(
    r"(?i)([\"']?(?:AccountKey|SharedAccessSignature|SharedAccessKey|sig|Signature|X-Amz-Signature|"
    r"X-Amz-Credential|X-Amz-Security-Token|AWSAccessKeyId|access_key|secret|token|password|passwd|"
    r"private_key|api_?key|Authorization)[\"']?"
    r"\s*[=:]\s*)(?:(?:Bearer|Basic|SharedKey|AWS4-HMAC-SHA256)\s+)?(\"[^\"]*\"|'[^']*'|[^\s&;,'\"]+)")
_BEARER = re.compile(r"(?i)\b(Bearer|Basic|SharedKey)\s+[A-Za-z0-9._~+/=:-]+")
# user:password@ in any URL; greedy to the token's last "@", as a secret may hold a "/".
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s@'\"<>]*@")
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|AIPA|APKA|ABIA|ACCA)[A-Z0-9]{16}\b")
_TOKENS = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|ya29\.[A-Za-z0-9._\-]+|AIza[0-9A-Za-z_\-]{35})"
    r"|(?i:\b(?:token|secret|password)\s+)[A-Za-z0-9._~+/=\-]{16,}")
# Recipients: an address (not our own "***" mask), and an international phone number.
_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'+/=?^_`{|}~\-\u0080-\uffff]+@[A-Za-z0-9\-\u0080-\uffff]+(?:\.[A-Za-z0-9\-\u0080-\uffff]+)+")
_PHONE = re.compile(r"\+\d[\d ().\-]{5,}\d")


def service_code(exc: BaseException) -> str | None:
    """The storage service's own error code (SlowDown, AccessDenied, AuthorizationFailure...),
    from the exception or a cause: fsspec backends often wrap it in a plain OSError."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        response = getattr(current, "response", None)
        if isinstance(response, dict) and isinstance(response.get("Error", {}).get("Code"), str):
            return response["Error"]["Code"]
        code = getattr(current, "error_code", None)
        if isinstance(code, str) and code:
            return code
        current = current.__cause__ or current.__context__
    return None


def describe(exc: BaseException, limit: int = 400) -> str:
    """A one-line description of an error, safe for outcomes and logs: credentials
    (key=value secrets, SAS signatures, bearer and shared-key headers, user:password@
    in URLs, AWS key ids, well-known token formats) and recipients (email
    addresses, +international phone numbers) are replaced by ***."""
    code = service_code(exc)
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    if code and code not in text:
        text = f"{type(exc).__name__} [{code}]: {exc}".replace("\n", " ")
    text = _URL_USERINFO.sub(r"\1***@", text)
    text = _SECRETS.sub(r"\1***", text)
    text = _BEARER.sub(r"\1 ***", text)
    text = _AWS_KEY_ID.sub("***", text)
    text = _TOKENS.sub(lambda m: m.group(0).split()[0] + " ***" if " " in m.group(0) else "***", text)
    text = _EMAIL.sub("***@***", text)
    text = _PHONE.sub("+***", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
