"""The image service's REST operations as an OpenAPI document (served at api/v1/openapi.json)."""

from __future__ import annotations

from gemhub.services.common.openapi import OpenAPIRegistry

NAME = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^/:]*$"}
VISIBILITY = {"type": "string", "enum": ["public", "workspace", "private"]}
STATE = {"type": "string", "enum": ["preparing", "queued", "building", "succeeded", "failed", "cancelled"]}
CHOICE = {"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "object", "properties": {
    "id": {"type": "integer"}, "name": NAME, "version": {"type": "integer"}, "tag": {"type": "string"}}}]}
VERSION = {"type": "object", "properties": {
    "id": {"type": "integer"}, "number": {"type": "integer"}, "state": STATE, "size_bytes": {"type": "integer"},
    "digest": {"type": "string"}, "error": {"type": "string"}, "note": {"type": "string"},
    "hints": {"type": "array", "items": {"type": "object"}}, "dockerfile": {"type": "string"},
    "base": {"type": ["object", "null"]}, "tags": {"type": "array", "items": {"type": "string"}},
    "pushed": {"type": "string"}, "push_error": {"type": "string"}, "rootfs": {"type": "boolean"},
    "created": {"type": "string"}, "started": {"type": ["string", "null"]},
    "finished": {"type": ["string", "null"]}}}
IMAGE = {"type": "object", "properties": {
    "id": {"type": "integer"}, "name": {"type": "string"}, "kind": {"type": "string", "enum": ["official", "custom"]},
    "workspace_id": {"type": ["integer", "null"]}, "workspace": {"type": "string"},
    "description": {"type": "string"}, "visibility": VISIBILITY,
    "accelerators": {"type": "array", "items": {"type": "string"}}, "cluster_only": {"type": "boolean"},
    "latest_version": {"type": ["integer", "null"]}, "size_bytes": {"type": "integer"},
    "tags": {"type": "object"}, "versions": {"type": "array", "items": VERSION}}}
PROBLEM = {"type": "object", "properties": {"line": {"type": "integer"}, "instruction": {"type": "string"},
                                            "reason": {"type": "string"}}}
PAGE = {"offset": {"type": "integer", "minimum": 0}, "limit": {"type": "integer", "minimum": 0}}


def page_of(schema: dict) -> dict:
    return {"type": "object", "properties": {"items": {"type": "array", "items": schema},
                                             "_pagination": {"type": "object"}}}


def describe(r: OpenAPIRegistry) -> OpenAPIRegistry:
    i, v = "/images/{image_id}", "/images/{image_id}/versions/{number}"
    r.add("get", "/images", "Official images and the images you can see", response=page_of(IMAGE),
          query={**PAGE, "workspace": {"type": "string"}, "kind": {"type": "string", "enum": ["official", "custom"]},
                 "usable": {"type": "boolean"}})
    r.add("post", "/images", "Create a custom image (then build versions of it)", status=201, response=IMAGE,
          errors=(400, 401, 409), request={"type": "object", "required": ["name"], "properties": {
              "name": NAME, "workspace": {"type": "string"}, "description": {"type": "string"},
              "visibility": VISIBILITY}})
    r.add("get", i, "An image with its versions and tags", response=IMAGE)
    r.add("patch", i, "Change name, description or visibility", response=IMAGE, errors=(400, 401, 403, 404, 409),
          request={"type": "object", "properties": {"name": NAME, "description": {"type": "string"},
                                                    "visibility": VISIBILITY}})
    r.add("delete", i, "Delete an image (refused while a version runs, builds or is a base)", status=204,
          errors=(400, 401, 403, 404, 409))
    r.add("get", f"{i}/versions", "Versions (builds) of an image", response=page_of(VERSION))
    r.add("post", f"{i}/versions", "Queue a build: the Dockerfile after FROM, the base, the project whose code"
                                   " COPY/ADD read (official images: a hub admin rebuilds the recipe)",
          status=202, response=VERSION, errors=(400, 401, 403, 404, 409), request={"type": "object", "properties": {
              "dockerfile": {"type": "string", "maxLength": 65536}, "base": CHOICE,
              "project": {"type": "string"}, "note": {"type": "string"}}})
    r.add("get", v, "A version", response=VERSION)
    r.add("delete", v, "Delete a version (refused while it runs, builds or is a base)", status=204,
          errors=(401, 403, 404, 409))
    r.add("post", f"{v}/cancel", "Cancel a queued or running build", errors=(401, 403, 404, 409))
    r.add("get", f"{v}/log", "The build log from ?offset=; with ?wait= (seconds) a running build's answer"
          " waits for new text or the end of the build", query={
        "offset": {"type": "integer", "minimum": 0}, "wait": {"type": "integer", "minimum": 0, "maximum": 30}},
          response={"type": "object", "properties": {
            "text": {"type": "string"}, "offset": {"type": "integer"}, "state": STATE, "done": {"type": "boolean"}}})
    r.add("post", f"{v}/push", "Push a built version to the registry again", response=VERSION,
          errors=(401, 403, 404, 409, 503))
    r.add("put", i + "/tags/{tag}", "Point a tag at a built version", response=IMAGE,
          errors=(400, 401, 403, 404, 409), request={"type": "object", "required": ["version"], "properties": {
              "version": {"type": "integer", "minimum": 1}}})
    r.add("delete", i + "/tags/{tag}", "Remove a tag", status=204, errors=(401, 403, 404))
    r.add("get", "/builds", "Hub admins: every workspace's builds, newest first (the console's queue)",
          response=page_of(VERSION), query={**PAGE, "state": {"type": "string", "enum": ["active", "recent"]}})
    r.add("post", "/dockerfile/check", "Check a Dockerfile against the policy without building",
          request={"type": "object", "required": ["dockerfile"], "properties": {"dockerfile": {"type": "string"}}},
          response={"type": "object", "properties": {"ok": {"type": "boolean"},
                                                     "problems": {"type": "array", "items": PROBLEM},
                                                     "hints": {"type": "array", "items": {"type": "object"}}}})
    r.add("post", "/resolve", "The built version a user may start (the spawner's call, ?user=)",
          request={"type": "object", "required": ["image"], "properties": {"image": CHOICE,
                                                                            "workspace_id": {"type": "integer"}}},
          errors=(400, 401, 403, 404, 409))
    return r
