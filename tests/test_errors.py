"""Store errors: classification from real backend exceptions, and scrubbed descriptions."""

from __future__ import annotations

import asyncio
import errno
import socket

import aiohttp
import azure.core.exceptions as azure_errors
import botocore.exceptions
import gcsfs.retry
import pytest

from archive.errors import TRANSIENT, ErrorClass, classify, describe, status_class


def client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": f"{code} message"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject")


def azure_error(cls, message: str, status: int):
    exc = cls(message)
    exc.status_code = status
    return exc


def chained(outer: BaseException, cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise outer from inner
    except BaseException as caught:
        return caught


def implicit_context(outer: BaseException, context: BaseException) -> BaseException:
    try:
        try:
            raise context
        except BaseException:
            raise outer
    except BaseException as caught:
        return caught


def aiohttp_error(status: int) -> aiohttp.ClientResponseError:
    return aiohttp.ClientResponseError(None, (), status=status, message="")


CLASSIFY = [
    pytest.param(lambda: client_error("SlowDown", 503), ErrorClass.THROTTLED, id="s3-SlowDown-503"),
    pytest.param(lambda: client_error("AccessDenied", 403), ErrorClass.AUTH, id="s3-AccessDenied-403"),
    pytest.param(lambda: client_error("NoSuchBucket", 404), ErrorClass.NOT_FOUND, id="s3-NoSuchBucket-404"),
    pytest.param(lambda: client_error("InternalError", 500), ErrorClass.SERVER, id="s3-InternalError-500"),
    pytest.param(lambda: client_error("ExpiredToken", 400), ErrorClass.AUTH, id="s3-ExpiredToken-400"),
    pytest.param(lambda: client_error("RequestTimeout", 400), ErrorClass.TIMEOUT, id="s3-RequestTimeout-400"),
    pytest.param(lambda: client_error("ServiceUnavailable", 503), ErrorClass.THROTTLED, id="s3-ServiceUnavailable"),
    pytest.param(lambda: client_error("SomethingNew", 502), ErrorClass.SERVER, id="s3-unknown-code-502"),
    pytest.param(lambda: client_error("InvalidArgument", 400), ErrorClass.CLIENT, id="s3-InvalidArgument-400"),
    pytest.param(lambda: PermissionError("Access Denied"), ErrorClass.AUTH, id="PermissionError"),
    pytest.param(lambda: PermissionError(errno.EACCES, "Permission denied"), ErrorClass.AUTH,
                 id="PermissionError-EACCES"),
    pytest.param(lambda: FileNotFoundError("The specified bucket does not exist"), ErrorClass.NOT_FOUND,
                 id="FileNotFoundError"),
    pytest.param(lambda: TimeoutError(), ErrorClass.TIMEOUT, id="TimeoutError"),
    pytest.param(lambda: asyncio.TimeoutError(), ErrorClass.TIMEOUT, id="asyncio.TimeoutError"),
    pytest.param(lambda: socket.timeout("timed out"), ErrorClass.TIMEOUT, id="socket.timeout"),
    pytest.param(lambda: ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), ErrorClass.CONNECTION,
                 id="ConnectionRefusedError"),
    pytest.param(lambda: ConnectionResetError(), ErrorClass.CONNECTION, id="ConnectionResetError"),
    pytest.param(lambda: OSError(errno.ECONNRESET, "reset"), ErrorClass.CONNECTION, id="OSError-ECONNRESET"),
    pytest.param(lambda: OSError(errno.EBUSY, "SlowDown"), ErrorClass.THROTTLED, id="OSError-EBUSY"),
    pytest.param(lambda: OSError(errno.ETIMEDOUT, "timed out"), ErrorClass.TIMEOUT, id="OSError-ETIMEDOUT"),
    pytest.param(lambda: aiohttp_error(429), ErrorClass.THROTTLED, id="aiohttp-429"),
    pytest.param(lambda: aiohttp_error(403), ErrorClass.AUTH, id="aiohttp-403"),
    pytest.param(lambda: aiohttp_error(500), ErrorClass.SERVER, id="aiohttp-500"),
    pytest.param(lambda: aiohttp.ClientConnectionError("Cannot connect to host"), ErrorClass.CONNECTION,
                 id="aiohttp-ClientConnectionError"),
    pytest.param(lambda: aiohttp.ServerTimeoutError("Timeout on reading data from socket"), ErrorClass.TIMEOUT,
                 id="aiohttp-ServerTimeoutError"),
    pytest.param(lambda: azure_error(azure_errors.ResourceNotFoundError, "The specified container does not exist.",
                                     404), ErrorClass.NOT_FOUND, id="azure-ResourceNotFound-404"),
    pytest.param(lambda: azure_error(azure_errors.ClientAuthenticationError,
                                     "Server failed to authenticate the request.", 403), ErrorClass.AUTH,
                 id="azure-ClientAuthentication-403"),
    pytest.param(lambda: azure_error(azure_errors.HttpResponseError, "The server is busy.", 503),
                 ErrorClass.THROTTLED, id="azure-HttpResponseError-503"),
    pytest.param(lambda: azure_error(azure_errors.HttpResponseError, "Internal error", 500), ErrorClass.SERVER,
                 id="azure-HttpResponseError-500"),
    # azure-core raises ServiceRequestError from the transport's own error.
    pytest.param(lambda: chained(azure_errors.ServiceRequestError("Connection aborted"),
                                 ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")),
                 ErrorClass.CONNECTION, id="azure-ServiceRequestError-from-refused"),
    pytest.param(lambda: azure_errors.ServiceResponseTimeoutError("Read timed out"), ErrorClass.TIMEOUT,
                 id="azure-ServiceResponseTimeoutError"),
    pytest.param(lambda: gcsfs.retry.HttpError({"code": 503, "message": "x"}), ErrorClass.THROTTLED,
                 id="gcsfs-503"),
    pytest.param(lambda: gcsfs.retry.HttpError({"code": 429, "message": "rate limit"}), ErrorClass.THROTTLED,
                 id="gcsfs-429"),
    pytest.param(lambda: gcsfs.retry.HttpError({"code": 401, "message": "Invalid Credentials"}), ErrorClass.AUTH,
                 id="gcsfs-401"),
    pytest.param(lambda: gcsfs.retry.HttpError({"code": 404, "message": "bucket does not exist"}),
                 ErrorClass.NOT_FOUND, id="gcsfs-404"),
    pytest.param(lambda: gcsfs.retry.HttpError({"code": 408, "message": "x"}), ErrorClass.TIMEOUT, id="gcsfs-408"),
    pytest.param(lambda: chained(RuntimeError("write failed"), client_error("SlowDown", 503)),
                 ErrorClass.THROTTLED, id="raise-from-s3-slowdown"),
    pytest.param(lambda: chained(OSError("upload failed"), client_error("AccessDenied", 403)), ErrorClass.AUTH,
                 id="raise-from-s3-accessdenied"),
    pytest.param(lambda: chained(RuntimeError("x"), chained(ValueError("y"), ConnectionRefusedError())),
                 ErrorClass.CONNECTION, id="raise-from-two-levels"),
    pytest.param(lambda: implicit_context(RuntimeError("during handling"), TimeoutError()), ErrorClass.TIMEOUT,
                 id="implicit-context"),
    pytest.param(lambda: chained(PermissionError("outer tells"), TimeoutError()), ErrorClass.AUTH,
                 id="outer-wins-when-it-tells"),
    pytest.param(lambda: RuntimeError("something odd"), ErrorClass.UNKNOWN, id="RuntimeError"),
    pytest.param(lambda: ValueError("x"), ErrorClass.UNKNOWN, id="ValueError"),
    pytest.param(lambda: OSError("no errno"), ErrorClass.UNKNOWN, id="bare-OSError"),
]


@pytest.mark.parametrize("make, expected", CLASSIFY)
def test_classify(make, expected):
    assert classify(make()) is expected


def test_classify_survives_a_cause_cycle():
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__cause__, b.__cause__ = b, a
    assert classify(a) is ErrorClass.UNKNOWN


@pytest.mark.parametrize("status, expected", [
    pytest.param(400, ErrorClass.CLIENT, id="400"),
    pytest.param(401, ErrorClass.AUTH, id="401"),
    pytest.param(403, ErrorClass.AUTH, id="403"),
    pytest.param(404, ErrorClass.NOT_FOUND, id="404"),
    pytest.param(408, ErrorClass.TIMEOUT, id="408"),
    pytest.param(409, ErrorClass.CLIENT, id="409"),
    pytest.param(429, ErrorClass.THROTTLED, id="429"),
    pytest.param(500, ErrorClass.SERVER, id="500"),
    pytest.param(502, ErrorClass.SERVER, id="502"),
    pytest.param(503, ErrorClass.THROTTLED, id="503"),
    pytest.param(504, ErrorClass.SERVER, id="504"),
    pytest.param(200, ErrorClass.UNKNOWN, id="200"),
    pytest.param(302, ErrorClass.UNKNOWN, id="302"),
])
def test_status_class(status, expected):
    assert status_class(status) is expected


def test_transient_classes():
    assert TRANSIENT == {ErrorClass.THROTTLED, ErrorClass.SERVER, ErrorClass.TIMEOUT, ErrorClass.CONNECTION}


@pytest.mark.parametrize("error_class, value", [
    pytest.param(ErrorClass.AUTH, "auth", id="auth"),
    pytest.param(ErrorClass.THROTTLED, "throttled", id="throttled"),
    pytest.param(ErrorClass.NOT_FOUND, "not_found", id="not_found"),
])
def test_error_class_values(error_class, value):
    assert error_class.value == value


SECRETS = [
    # (message, secret that must go, text that must stay)
    pytest.param("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=abc123+/==;EndpointSuffix=x",
                 "abc123+/==", "AccountName=acct", id="azure-connection-string"),
    pytest.param("AccountKey=abc", "abc", "AccountKey=", id="AccountKey"),
    pytest.param("GET https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIAEXAMPLE%2F20240731"
                 "&X-Amz-Signature=0123456789abcdef0123&X-Amz-Expires=60",
                 "0123456789abcdef0123", "X-Amz-Expires=60", id="X-Amz-Signature"),
    pytest.param("https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIAEXAMPLE%2F20240731&x=1", "AKIAEXAMPLE",
                 "x=1", id="X-Amz-Credential"),
    pytest.param("https://b.s3.amazonaws.com/k?X-Amz-Security-Token=FQoGZXIvYXdzEXAMPLE&x=1",
                 "FQoGZXIvYXdzEXAMPLE", "x=1", id="X-Amz-Security-Token"),
    pytest.param("https://acct.blob.core.windows.net/c/k?sv=2021-08-06&sig=Zm9vYmFy%2Bc2ln%3D&se=2030",
                 "Zm9vYmFy%2Bc2ln%3D", "sv=2021-08-06", id="sas-sig"),
    pytest.param("SharedAccessSignature=sv=2021&sig=s3cr3t", "s3cr3t", "SharedAccessSignature=", id="sas-conn"),
    pytest.param("Authorization: Bearer ya29.secret-token", "ya29.secret-token", "Authorization",
                 id="authorization-bearer"),
    pytest.param("headers: {'Authorization': 'Bearer ya29.secret-token'}", "ya29.secret-token", "Authorization",
                 id="authorization-in-a-dict-repr"),
    pytest.param("Authorization=AWS4-HMAC-SHA256 Credential=AKIA/2024, Signature=deadbeefcafe", "deadbeefcafe",
                 "Authorization", id="aws4-authorization"),
    pytest.param('password="hunter2 with space"', "hunter2", "password=", id="quoted-password"),
    pytest.param("AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=wJalrXUtnFEMI", "wJalrXUtnFEMI",
                 "AWSAccessKeyId=", id="legacy-s3-query"),
    # Credentials inside a URL's userinfo, whatever the scheme.
    pytest.param("cannot open s3://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMIK7MDENG@bucket/k", "wJalrXUtnFEMIK7MDENG",
                 "@bucket/k", id="url-userinfo-s3"),
    pytest.param("cannot open abfs://user:hunter2pass@container/k", "hunter2pass", "@container/k",
                 id="url-userinfo-abfs"),
    pytest.param("GET https://admin:hunter2pass@minio.internal:9000/b failed", "hunter2pass",
                 "@minio.internal:9000/b", id="url-userinfo-https"),
    pytest.param("cannot open s3://AKIAIOSFODNN7EXAMPLE:wJalr/XUtnFEMI@bucket", "wJalr",
                 "@bucket", id="url-userinfo-secret-with-slash"),
    # AWS key ids stand alone in messages too.
    pytest.param("The AWS Access Key Id AKIAIOSFODNN7EXAMPLE does not exist", "AKIAIOSFODNN7EXAMPLE",
                 "does not exist", id="bare-access-key-id"),
    pytest.param("session ASIAY34FZKBOKMUTVV7A expired", "ASIAY34FZKBOKMUTVV7A", "expired",
                 id="bare-temporary-key-id"),
    # Options and settings reprs.
    pytest.param("{'key': 'AKIAEXAMPLEKEY', 'secret': 'wJalrXUtn'}", "wJalrXUtn", "'secret'", id="s3fs-secret"),
    pytest.param("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG", "wJalrXUtnFEMI", "aws_secret_access_key=",
                 id="aws_secret_access_key"),
    pytest.param("aws_session_token: FwoGZXIvYXdzEBQaD", "FwoGZXIvYXdzEBQaD", "aws_session_token", id="session-token"),
    pytest.param("client_secret=Zx8Q~abc.def", "Zx8Q~abc.def", "client_secret=", id="azure-client-secret"),
    pytest.param("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=AbC123=",
                 "AbC123=", "SharedAccessKeyName=root", id="shared-access-key"),
    pytest.param('"private_key": "-----BEGIN PRIVATE KEY-----MIIEv"', "MIIEv", "private_key", id="gcp-private-key"),
    pytest.param("x-ms-sas=1 SharedAccessSignature sr=x&sig=AbCdEf123&se=1", "AbCdEf123", "se=1",
                 id="sas-in-header-form"),
    pytest.param("Authorization: SharedKey acct:AbCdEfGh123=", "AbCdEfGh123", "Authorization",
                 id="azure-shared-key-header"),
    pytest.param("Proxy-Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz", "Proxy-Authorization",
                 id="basic-auth"),
    pytest.param("token ghp_16C7e42F292c6912E7710c838347Ae178B4a rejected", "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
                 "rejected", id="bare-token-word"),
]

RECIPIENTS = [
    # (message, recipient that must go, text that must stay)
    pytest.param("cannot write sent_messages/x for customer@example.com: AccessDenied", "customer@example.com",
                 "AccessDenied", id="email"),
    pytest.param("to=Jane.Doe+tag@sub.example.co.uk rejected", "Jane.Doe+tag@sub.example.co.uk", "rejected",
                 id="email-plus-subdomain"),
    pytest.param("recipient user@xn--bcher-kva.example unknown", "user@xn--bcher-kva.example", "unknown",
                 id="email-punycode"),
    pytest.param("recipient user@b\u00fccher.example unknown", "user@b\u00fccher.example", "unknown",
                 id="email-unicode"),
    pytest.param("phone +15555555555 refused", "+15555555555", "refused", id="e164"),
    pytest.param("phone +44 7911 123456 refused", "7911 123456", "refused", id="e164-spaced"),
    pytest.param("phone +1 (555) 555-5555 refused", "555-5555", "refused", id="e164-punctuated"),
]


@pytest.mark.parametrize("message, recipient, kept", RECIPIENTS)
def test_describe_never_shows_a_recipient(message, recipient, kept):
    text = describe(OSError(message))
    assert recipient not in text, text
    assert kept in text


@pytest.mark.parametrize("message", [
    "Key: sent_messages/Email/202407/1722529032/592fc57ef0b254235cfa5977bccfd34a/m1.json.lz4",
    "SlowDown: Please reduce your request rate. status=503 attempts=3",
    "Cannot connect to host 127.0.0.1:9000 ssl:default [Connect call failed ('127.0.0.1', 9000)]",
    "s3://bucket/archive/sent_messages/Sms/202407/1/b3e2048d6e5378173713705fde6a93da/m.json.lz4",
])
def test_describe_keeps_what_diagnoses_a_failure(message):
    assert describe(OSError(message)) == f"OSError: {message}"


@pytest.mark.parametrize("message, secret, kept", SECRETS)
def test_describe_scrubs_secrets(message, secret, kept):
    text = describe(PermissionError(message))
    assert secret not in text
    assert kept in text
    assert text.startswith("PermissionError: ")
    assert "***" in text


@pytest.mark.parametrize("make", [
    pytest.param(lambda: client_error("AccessDenied", 403), id="botocore"),
    pytest.param(lambda: azure_error(azure_errors.ClientAuthenticationError, "sig=abcdef denied", 403), id="azure"),
])
def test_describe_real_errors(make):
    text = describe(make())
    assert "\n" not in text
    assert "abcdef" not in text
    assert type(make()).__name__ in text


def test_describe_is_one_line_and_bounded():
    text = describe(RuntimeError("line one\nline two " + "x" * 1000), limit=100)
    assert "\n" not in text
    assert len(text) == 100 and text.endswith("…")
    assert describe(RuntimeError("short")) == "RuntimeError: short"
