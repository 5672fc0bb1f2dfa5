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


def _handler(body: bytes, cap: int = 2**20) -> APIHandler:
    app = web.Application(database=None, service_name="t", hub_auth=Mock(), max_body_bytes=cap)
    req = HTTPServerRequest(start_line=RequestStartLine("POST", "/x", "HTTP/1.1"), headers=HTTPHeaders({"Host": "x"}),
                            connection=Mock())
    handler = APIHandler(app, req)
    for i in range(0, len(body), 7):  # the body arrives in pieces (stream_request_body)
        handler.data_received(body[i:i + 7])
    return handler


@pytest.mark.parametrize("body", [b"", b"{", b"[1]", b"null", b"\xff\xfe", b'"s"'])
def test_json_body_refuses_non_objects(body):
    with pytest.raises(errors.BadRequest):
        _handler(body).json_body()


def test_json_body_object():
    assert _handler(json.dumps({"a": 1}).encode()).json_body() == {"a": 1}


def test_a_body_past_the_cap_is_413_and_not_kept():
    handler = _handler(b"{" + b" " * 100 + b"}", cap=50)
    with pytest.raises(errors.PayloadTooLarge, match="102 bytes; at most 50"):
        handler.json_body()
    assert sum(map(len, handler._body_chunks)) <= 50
    assert _handler(b"", cap=50).json_body(default={}) == {}
