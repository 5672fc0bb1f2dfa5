"""A small registry of a service's REST operations, rendered as an OpenAPI 3 document."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

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
    errors: tuple[int, ...] = (400, 401, 403, 404)
    query: dict[str, dict] = field(default_factory=dict)


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
                 "schema": {"type": "integer"} if n.endswith("_id") else {"type": "string"}}
                for n in re.findall(r"{(\w+)}", op.path)
            ]
            params += [{"name": n, "in": "query", "required": False, "schema": s} for n, s in op.query.items()]
            responses: dict[str, Any] = {
                str(op.status): {"description": "success"}
                if op.response is None
                else {"description": "success", "content": {"application/json": {"schema": op.response}}}
            }
            for code in op.errors:
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
            "openapi": "3.0.3",
            "info": {"title": self.title, "version": self.version},
            "servers": [{"url": server_url}],
            "components": {
                "schemas": {"Error": ERROR_SCHEMA},
                "securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": "Authorization"}},
            },
            "security": [{"token": []}],
            "paths": paths,
        }
