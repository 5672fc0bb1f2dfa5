"""Errors map to JSON {"status", "message"} in one place; bad input is never a 500."""

from __future__ import annotations

import json

import pytest
from tornado import web
from unittest.mock import Mock

from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from gemhub.services.common import errors
from gemhub.services.common.handlers import APIHandler, _error_of


@pytest.mark.parametrize("cls,status", [
    (errors.BadRequest, 400), (errors.Unauthorized, 401), (errors.Forbidden, 403),
    (errors.NotFound, 404), (errors.Conflict, 409), (errors.Unavailable, 503),
])
def test_statuses(cls, status):
    e = cls("why")
    assert isinstance(e, errors.ServiceError)
    assert e.to_json() == {"status": status, "message": "why"}
    assert _error_of(500, (cls, e, None)) == (status, "why")


def test_http_errors_and_unknown_exceptions():
    assert _error_of(405, (web.HTTPError, web.HTTPError(405), None))[0] == 405
    assert _error_of(500, (ValueError, ValueError("secret detail"), None)) == (500, "internal error")


def _handler(body: bytes) -> APIHandler:
    app = web.Application(sessionmaker=None, service_name="t", hub_auth=Mock())
    req = HTTPServerRequest(start_line=RequestStartLine("POST", "/x", "HTTP/1.1"), headers=HTTPHeaders({"Host": "x"}),
                            body=body, connection=Mock())
    return APIHandler(app, req)


@pytest.mark.parametrize("body", [b"", b"{", b"[1]", b"null", b"\xff\xfe", b'"s"'])
def test_json_body_refuses_non_objects(body):
    with pytest.raises(errors.BadRequest):
        _handler(body).json_body()


def test_json_body_object():
    assert _handler(json.dumps({"a": 1}).encode()).json_body() == {"a": 1}
