"""The ledger's operations in the quota service's OpenAPI document."""

from __future__ import annotations

from gemhub.services.common.openapi import ID, PAGE, OpenAPIRegistry

NUMBER = {"type": ["number", "string"]}
LIMITS = {"type": "object", "properties": {
    "cpu": {"type": ["number", "string", "null"]}, "memory": {"type": ["string", "integer", "null"]},
    "memory_mib": {"type": ["integer", "null"]}, "environments": {"type": ["integer", "null"]},
    "jobs": {"type": ["integer", "null"]}, "inference": {"type": ["integer", "null"]},
    "accelerators": {"type": ["object", "null"], "additionalProperties": {"type": ["number", "string", "null"]}}}}
ADMISSION = {"type": "object", "properties": {
    "id": {"type": "integer"}, "state": {"type": "string", "enum": ["queued", "admitted", "released", "cancelled"]},
    "queue": {"type": ["string", "null"]}, "position": {"type": "integer"}, "queue_length": {"type": "integer"},
    "message": {"type": ["string", "null"]}, "reason": {"type": ["string", "null"]},
    "workspace_id": {"type": "integer"}, "project_id": {"type": "integer"}, "user": {"type": "string"},
    "kind": {"type": "string"}, "holder": {"type": "string"}, "preset": {"type": ["string", "null"]},
    "spec": {"type": "string"}, "priority": {"type": "integer"}, "placement": {"type": ["object", "null"]},
    "demand": {"type": "object"}, "borrowed": {"type": ["object", "null"]},
    "preempted_by": {"type": ["integer", "null"]}, "created": {"type": "string"},
    "admitted_at": {"type": ["string", "null"]}, "ended_at": {"type": ["string", "null"]},
    "end_reason": {"type": ["string", "null"]}}}
QUOTA = {"type": "object", "properties": {
    "workspace_id": {"type": "integer"}, "quota": LIMITS, "borrowing": LIMITS,
    "cohort": {"type": ["string", "null"]}, "max_priority": {"type": "integer"}}}
PRIORITY = {"type": ["integer", "string", "null"]}


def page_of(schema: dict) -> dict:
    return {"type": "object", "properties": {"items": {"type": "array", "items": schema},
                                             "_pagination": {"type": "object"}}}


def add_ledger_operations(r: OpenAPIRegistry) -> None:
    ws = "/workspaces/{ws_id}"
    r.add("post", "/admissions", "Ask for an admission (the spawner's and services' call, with the quota "
          "service's token and ?user=): admitted with its placement, or queued with its position",
          status=201, response=ADMISSION, errors=(409,),
          query={"user": {"type": "string"}},
          request={"type": "object", "required": ["workspace_id", "project_id", "idempotency_key", "holder"],
                   "properties": {"workspace_id": {"type": "integer"}, "project_id": {"type": "integer"},
                                  "kind": {"type": "string", "enum": ["notebook", "job", "inference"]},
                                  "preset": {"type": ["string", "null"]}, "spec": {"type": ["string", "null"]},
                                  "cpu": NUMBER, "memory": {"type": "string"}, "priority": PRIORITY,
                                  "idempotency_key": {"type": "string", "maxLength": 255},
                                  "holder": {"type": "string", "maxLength": 512}, "replace": {"type": "boolean"}}})
    r.add("get", "/admissions", "Ledger entries of the caller's workspaces (hub admins: all)",
          response=page_of(ADMISSION),
          query={"state": {"type": "string", "enum": ["open", "queued", "admitted", "ended", "all"]},
                 "workspace_id": ID, "for_user": {"type": "string"}, "holder": {"type": "string"}, **PAGE})
    r.add("get", "/admissions/{admission_id}", "One ledger entry (with its queue position while it waits)",
          response=ADMISSION)
    r.add("delete", "/admissions/{admission_id}", "Release an entry or leave the queue (idempotent); "
          "an optional body {\"reason\": ...}", response=ADMISSION)
    r.add("get", "/admissions/{admission_id}/events", "The entry's history", response=page_of({"type": "object"}))
    r.add("get", "/quotas", "Every workspace's quota and usage (hub admins)", response=page_of(QUOTA))
    r.add("get", f"{ws}/quota", "A workspace's quota, borrowing limits, cohort and maximum priority",
          response=QUOTA)
    r.add("put", f"{ws}/quota", "Set them (hub admins); null removes a limit", response=QUOTA,
          request={"type": "object", "properties": {"quota": LIMITS, "borrowing": LIMITS,
                                                    "cohort": {"type": ["string", "null"]},
                                                    "max_priority": PRIORITY}})
    r.add("get", f"{ws}/usage", "Quota, used, free, and who uses what (members)", response={"type": "object"})
    r.add("get", ws + "/members/{username}/quota", "A member's personal limits", response={"type": "object"})
    r.add("put", ws + "/members/{username}/quota", "Set a member's personal limits (owners, admins)",
          request=LIMITS, response={"type": "object"})
    r.add("delete", ws + "/members/{username}/quota", "Remove a member's personal limits", status=204)
    r.add("get", "/priorities", "Priority levels and users' priorities (hub admins)", response={"type": "object"})
    r.add("put", "/priorities/{username}", "Set a user's priority (hub admins)", response={"type": "object"},
          request={"type": "object", "required": ["priority"], "properties": {"priority": PRIORITY}})
    r.add("get", "/hooks", "Registered stop hooks (services, hub admins)", response=page_of({"type": "object"}))
    r.add("put", "/hooks/{kind}", "Register the stop hook of a kind of workload (a hub service's token)",
          response={"type": "object"}, request={"type": "object", "required": ["url", "token"],
                                                "properties": {"url": {"type": "string"},
                                                               "token": {"type": "string"}}})
    r.add("delete", "/hooks/{kind}", "Remove a stop hook", status=204)
    r.add("get", "/devices", "Nodes, devices, maintenance marks and holders (hub admins)",
          response={"type": "object"})
    r.add("post", "/devices", "Put a device or node into maintenance or back (hub admins)",
          response={"type": "object"}, request={"type": "object", "properties": {
              "device": {"type": "string"}, "node": {"type": "string"}, "maintenance": {"type": "boolean"}}})
