"""The data service's REST operations as an OpenAPI document (served at api/v1/openapi.json)."""

from __future__ import annotations

from gemhub.services.common.openapi import COUNT, ID, PAGE, OpenAPIRegistry, nullable

NAME = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^/]*$"}
VISIBILITY = {"type": "string", "enum": ["public", "workspace", "private"]}
VERSION = {"type": "object", "properties": {
    "number": {"type": "integer"}, "state": {"type": "string", "enum": ["draft", "published"]},
    "size_bytes": {"type": "integer"}, "file_count": {"type": "integer"}, "note": {"type": "string"},
    "created": {"type": "string"}, "published": nullable({"type": "string"})}}
ASSET = {"type": "object", "properties": {
    "id": {"type": "integer"}, "kind": {"type": "string", "enum": ["dataset", "model"]}, "name": {"type": "string"},
    "workspace_id": {"type": "integer"}, "workspace": {"type": "string"}, "description": {"type": "string"},
    "tags": {"type": "array", "items": {"type": "string"}}, "visibility": VISIBILITY,
    "latest_version": nullable(ID), "draft": nullable(ID),
    "versions": {"type": "array", "items": VERSION}}}
UPLOAD = {"type": "object", "properties": {
    "id": {"type": "string"}, "path": {"type": "string"}, "size": {"type": "integer"},
    "sha256": {"type": "string"}, "offset": {"type": "integer"}, "state": {"type": "string"}}}
CHOICE = {"type": "object", "properties": {"id": ID, "name": NAME, "version": ID}}
STORAGE = {"type": "object", "properties": {
    "workspace_id": {"type": "integer"}, "usage": {"type": "object"}, "total": {"type": "integer"},
    "allowance": {"type": "integer"}, "level": {"type": "string", "enum": ["ok", "warning", "full"]},
    "percent": {"type": "number"}, "message": {"type": "string"}}}


def page_of(schema: dict) -> dict:
    return {"type": "object", "properties": {"items": {"type": "array", "items": schema},
                                             "_pagination": {"type": "object"}}}


UPLOAD_ID = {"upload_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}


def describe(r: OpenAPIRegistry) -> OpenAPIRegistry:
    a, v = "/assets/{asset_id}", "/assets/{asset_id}/versions/{number}"
    r.add("get", "/assets", "Datasets and models you can see", response=page_of(ASSET),
          query={**PAGE, "kind": {"type": "string", "enum": ["dataset", "model"]},
                 "workspace": {"type": "string"}, "mountable": {"type": "boolean"}})
    r.add("post", "/assets", "Create a dataset or model", status=201, response=ASSET, errors=(409,),
          request={"type": "object", "required": ["name"], "properties": {
              "kind": {"type": "string", "enum": ["dataset", "model"]}, "name": NAME,
              "workspace": {"type": "string"}, "description": {"type": "string"},
              "tags": {"type": "array", "items": {"type": "string"}}, "visibility": VISIBILITY}})
    r.add("get", a, "A dataset or model with its versions", response=ASSET)
    r.add("patch", a, "Change name, description, tags or visibility", response=ASSET,
          errors=(409,), request={"type": "object", "properties": {
              "name": NAME, "description": {"type": "string"}, "visibility": VISIBILITY,
              "tags": {"type": "array", "items": {"type": "string"}}}})
    r.add("delete", a, "Delete a dataset or model that was never published", status=204,
          errors=(409,))
    r.add("get", f"{a}/versions", "Versions", response=page_of(VERSION))
    r.add("post", f"{a}/versions", "Start a draft version, or save a project's output as a published version",
          status=201, response=VERSION, errors=(409,),
          request={"type": "object", "properties": {"note": {"type": "string"}, "from_output": {
              "type": "object", "properties": {"project": {"type": "string"}, "path": {"type": "string"}}}}})
    r.add("get", v, "A version", response=VERSION)
    r.add("delete", v, "Discard a draft", status=204, errors=(409,))
    r.add("post", f"{v}/publish", "Publish a draft (read-only forever after)", response=VERSION,
          errors=(409,))
    r.add("get", f"{v}/files", "List a folder of a version", query={"path": {"type": "string"}})
    r.add("post", f"{v}/files", "Change a draft: mkdir, rename, delete, extract", errors=(409,),
          request={"type": "object", "required": ["op", "path"], "properties": {
              "op": {"type": "string", "enum": ["mkdir", "rename", "delete", "extract"]},
              "path": {"type": "string"}, "name": NAME}})
    sftp_query = {"user": {"type": "string"}, "kind": {"type": "string", "enum": ["dataset", "model"]}}
    r.add("get", f"{v}/sftp-target", "The SSH gateway only: may ?user= write this draft over SFTP; its folder",
          errors=(409,), query=sftp_query, response={"type": "object", "properties": {
              "path": {"type": "string"}, "lock": {"type": "string"}, "name": {"type": "string"}}})
    r.add("post", f"{v}/sftp-target", "The SSH gateway only: an SFTP session ended; re-measure the draft",
          response=VERSION, errors=(409,), query=sftp_query)
    r.add("get", f"{v}/files/content", "Download a file of a version", query={"path": {"type": "string"}})
    r.add("post", f"{v}/uploads", "Start resumable uploads (a batch of at most 50 files)", status=201,
          errors=(409,), request={"type": "object", "required": ["files"], "properties": {
              "files": {"type": "array", "items": {"type": "object", "properties": {
                  "path": {"type": "string"}, "size": COUNT, "sha256": {"type": "string"}}}}}})
    r.add("get", "/uploads/{upload_id}", "An upload and its received offset", response=UPLOAD,
          path_params=UPLOAD_ID)
    r.add("put", "/uploads/{upload_id}", "Send a chunk from ?offset= (application/octet-stream)",
          response=UPLOAD, errors=(409,), query={"offset": COUNT}, path_params=UPLOAD_ID)
    r.add("post", "/uploads/{upload_id}/complete", "Verify size and sha256 and move the file into the draft",
          response=UPLOAD, errors=(409,), path_params=UPLOAD_ID)
    r.add("post", "/mounts/resolve", "Resolve dataset/model choices to mountable versions (the spawner's call)",
          request={"type": "object", "properties": {"datasets": {"type": "array", "items": CHOICE},
                                                    "models": {"type": "array", "items": CHOICE},
                                                    "workspace_id": ID}})
    r.add("get", "/limits", "Upload limits (file size, batch size) and the suggested chunk size",
          response={"type": "object", "properties": {"max_file_bytes": {"type": "integer"},
                                                     "max_batch_files": {"type": "integer"},
                                                     "chunk_bytes": {"type": "integer"}}})
    r.add("get", "/storage", "Storage of a workspace by category against the free allowance",
          response=STORAGE, query={"workspace": {"type": "string"}})
    r.add("get", "/storage/samples", "Hourly storage samples (billing)",
          query={**PAGE, "workspace": {"type": "string"}, "since": {"type": "string"}})
    return r
