"""A small registry of a service's REST operations, rendered as an OpenAPI 3.1 document
(JSON Schema 2020-12: a value that may be null is ``{"type": ["string", "null"]}``).

Every answer an operation can give is documented: its success status, the errors every
API handler can answer (:data:`COMMON_ERRORS`: a malformed number or body, no or a wrong
identity, not found, the hub unreachable), 413 where it takes a body, and the operation's
own (``errors=(409,)``). The schemathesis test (tests/integration/test_fuzz_services.py)
fails on any status a document does not list.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from .params import INT64_MAX

OPENAPI_VERSION = "3.1.0"
# 400 bad number/body, 401 no identity, 403 not allowed (e.g. acting for another user),
# 404 not found (or not yours), 503 the hub could not say who the caller is.
COMMON_ERRORS = (400, 401, 403, 404, 503)
ID = {"type": "integer", "minimum": 1, "maximum": INT64_MAX}
COUNT = {"type": "integer", "minimum": 0, "maximum": INT64_MAX}
PAGE = {"offset": COUNT, "limit": COUNT}


def nullable(schema: dict) -> dict:
    """``schema`` that also allows null (OpenAPI 3.1 / JSON Schema type lists)."""
    out = copy.deepcopy(schema)
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        out["type"] = [*kind, "null"]
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out

ERROR_SCHEMA = {
    "type": "object",
    "required": ["status", "message"],
    "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
}


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    request: dict | None = None
    response: dict | None = None
    status: int = 200
    errors: tuple[int, ...] = ()  # beyond COMMON_ERRORS (and 413 for a body), e.g. (409,)
    query: dict[str, dict] = field(default_factory=dict)
    # path parameters are ids (``*_id``, ``number``) or strings unless named here
    path_params: dict[str, dict] = field(default_factory=dict)


class OpenAPIRegistry:
    """Collects operations (path templates like ``/workspaces/{ws_id}``) under an API prefix."""

    def __init__(self, title: str, version: str = "1.0.0"):
        self.title = title
        self.version = version
        self.operations: list[Operation] = []

    def add(self, method: str, path: str, summary: str, **kw: Any) -> Operation:
        op = Operation(method.lower(), path, summary, **kw)
        self.operations.append(op)
        return op

    def document(self, server_url: str) -> dict:
        paths: dict[str, dict] = {}
        for op in self.operations:
            params = [
                {"name": n, "in": "path", "required": True,
                 "schema": copy.deepcopy(op.path_params.get(n) or (
                     ID if n.endswith("_id") or n == "number" else {"type": "string", "minLength": 1}))}
                for n in re.findall(r"{(\w+)}", op.path)
            ]
            params += [{"name": n, "in": "query", "required": False, "schema": s} for n, s in op.query.items()]
            responses: dict[str, Any] = {
                str(op.status): {"description": "success"}
                if op.response is None
                else {"description": "success", "content": {"application/json": {"schema": op.response}}}
            }
            codes = set(COMMON_ERRORS) | set(op.errors) | ({413} if op.request is not None else set())
            for code in sorted(codes):
                responses[str(code)] = {
                    "description": "error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
            op_id = f"{op.method}_{re.sub(r'[^a-z0-9]+', '_', op.path.lower()).strip('_')}"
            entry: dict[str, Any] = {"summary": op.summary, "operationId": op_id, "responses": responses}
            if params:
                entry["parameters"] = params
            if op.request is not None:
                entry["requestBody"] = {"required": True,
                                        "content": {"application/json": {"schema": copy.deepcopy(op.request)}}}
            paths.setdefault(op.path, {})[op.method] = entry
        return {
            "openapi": OPENAPI_VERSION,
            "info": {"title": self.title, "version": self.version},
            "servers": [{"url": server_url}],
            "components": {
                "schemas": {"Error": ERROR_SCHEMA},
                "securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": "Authorization"}},
            },
            "security": [{"token": []}],
            "paths": paths,
        }
