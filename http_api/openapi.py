"""The OpenAPI 3.1 document of the HTTP API, written by hand next to the routes (a test checks they agree)."""

from __future__ import annotations

from typing import Any

ERROR = {"$ref": "#/components/responses/Error"}
JOB = {"$ref": "#/components/schemas/Job"}
JOB_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


def _answer(description: str, schema: dict[str, Any], content_type: str = "application/json") -> dict[str, Any]:
    return {"description": description, "content": {content_type: {"schema": schema}}}


def document() -> dict[str, Any]:
    """The OpenAPI document served at /openapi.json."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ComfyUI bot HTTP API",
            "version": "1",
            "description": "Run the bot's ComfyUI workflows over HTTP, on the same queue and limits as Discord.",
        },
        "security": [{"bearer": []}],
        "paths": {
            "/workflows": {
                "get": {
                    "summary": "List the workflows with their options, types and limits",
                    "responses": {
                        "200": _answer(
                            "The workflows",
                            {
                                "type": "object",
                                "properties": {
                                    "workflows": {"type": "array", "items": {"$ref": "#/components/schemas/Workflow"}}
                                },
                            },
                        ),
                        "401": ERROR,
                    },
                }
            },
            "/jobs": {
                "post": {
                    "summary": "Submit a job; it runs in the background",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "description": "The same key (per token) returns the same job instead of a new one",
                            "schema": {"type": "string", "maxLength": 200},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Submit"}},
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "description": "For file options (image, audio, video): the part job first, "
                                    "then one part per file option, named by the option, with its file name",
                                    "required": ["job"],
                                    "properties": {
                                        "job": {
                                            "type": "string",
                                            "contentMediaType": "application/json",
                                            "description": "The same JSON as the application/json body",
                                        }
                                    },
                                    "additionalProperties": {
                                        "type": "string",
                                        "contentMediaType": "application/octet-stream",
                                    },
                                },
                                "encoding": {"job": {"contentType": "application/json"}},
                            },
                        },
                    },
                    "responses": {
                        "202": _answer("The new job", JOB),
                        "200": _answer("The job submitted before with this Idempotency-Key", JOB),
                        "400": ERROR,
                        "401": ERROR,
                        "404": ERROR,
                        "413": ERROR,
                        "429": ERROR,
                        "503": ERROR,
                    },
                },
                "get": {
                    "summary": "List your jobs, newest first",
                    "parameters": [
                        {"name": "mine", "in": "query", "required": True, "schema": {"const": "1"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                        },
                        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
                    ],
                    "responses": {
                        "200": _answer(
                            "A page of your jobs",
                            {
                                "type": "object",
                                "properties": {"total": {"type": "integer"}, "jobs": {"type": "array", "items": JOB}},
                            },
                        ),
                        "400": ERROR,
                        "401": ERROR,
                    },
                },
            },
            "/jobs/{id}": {
                "get": {
                    "summary": "A job's state, place in line, progress, server, timings and outputs",
                    "parameters": [JOB_ID],
                    "responses": {"200": _answer("The job", JOB), "401": ERROR, "404": ERROR},
                },
                "delete": {
                    "summary": "Cancel one of your jobs",
                    "parameters": [JOB_ID],
                    "responses": {
                        "202": _answer("The job, being cancelled", JOB),
                        "401": ERROR,
                        "404": ERROR,
                        "409": ERROR,
                        "503": ERROR,
                    },
                },
            },
            "/jobs/{id}/outputs/{n}": {
                "get": {
                    "summary": "Download output number n (from 0) of a finished job",
                    "parameters": [
                        JOB_ID,
                        {"name": "n", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}},
                    ],
                    "responses": {
                        "200": _answer("The file", {"type": "string", "format": "binary"}, "application/octet-stream"),
                        "401": ERROR,
                        "404": ERROR,
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": _answer(
                    "An error",
                    {
                        "type": "object",
                        "properties": {
                            "error": {
                                "type": "object",
                                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                                "required": ["code", "message"],
                            }
                        },
                    },
                )
            },
            "schemas": {
                "Submit": {
                    "type": "object",
                    "required": ["workflow"],
                    "properties": {
                        "workflow": {"type": "string"},
                        "params": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
                        "nodes": {
                            "type": "object",
                            "description": 'Node inputs set as is, "6.text": value; only those the workflow lists',
                        },
                        "webhook": {
                            "type": "string",
                            "format": "uri",
                            "description": "POSTed the job once when it ends (retried 3 times); a public address "
                            "only, unless the bot allows private ones; signed when the bot has a webhook secret "
                            "(X-Webhook-Timestamp, X-Webhook-Signature: sha256=HMAC of timestamp.body)",
                        },
                    },
                },
                "Job": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "workflow": {"type": "string"},
                        "state": {"enum": ["queued", "running", "done", "failed", "cancelled"]},
                        "position": {"type": ["integer", "null"]},
                        "progress": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                        "node": {"type": ["string", "null"]},
                        "server": {"type": ["string", "null"]},
                        "error": {"type": ["string", "null"]},
                        "created_at": {"type": "number"},
                        "started_at": {"type": ["number", "null"]},
                        "finished_at": {"type": ["number", "null"]},
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "content_type": {"type": "string"},
                                    "size": {"type": "integer"},
                                    "url": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "Workflow": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                        "kind": {"enum": ["image", "audio", "video", "text", "other"]},
                        "options": {"type": "array", "items": {"type": "object"}},
                        "nodes": {"type": "object", "description": "Node inputs a job may set, with their values"},
                    },
                },
            },
        },
    }
