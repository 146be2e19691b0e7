"""The OpenAPI 3.1 document of the REST API, built from the pydantic models in
``webapp.api_models`` (their JSON schemas are the component schemas), so what is published is
what the server enforces. Served at GET /api/v1/openapi.json; the fuzz test reads it too."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from webapp.api_models import KEY_PATTERN, MODELS

BASE = "/api/v1"
REF = "#/components/schemas/{model}"


def _schemas() -> dict[str, Any]:
    # inputs as validated, outputs as serialised: each model appears once, in its own role
    from webapp.api_targets import MODELS as TARGET_MODELS

    pairs = [(m, "validation" if m.__name__.endswith("In") else "serialization")
             for m in MODELS + TARGET_MODELS]
    _, top = models_json_schema(pairs, ref_template=REF)
    return top.get("$defs", {})


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


ERRORS = {
    "401": _json("Error", "missing or wrong bearer token"),
    "413": _json("Error", "request body larger than 1 MB"),
}
BODY_ERRORS = {
    "400": _json("Error", "the body is not JSON"),
    "409": _json("Error", "a concurrent write took the same key; retry"),
    "422": _json("Error", "the body failed validation; details name each field"),
}


def _key_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "pattern": KEY_PATTERN}}


def _upsert(entity: str, key: str, model: str, key_doc: str) -> dict[str, Any]:
    param = [_key_param(key, key_doc)]
    return {
        "put": {"operationId": f"upsert_{entity}", "summary": f"Create or update a {entity}",
                "parameters": param,
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref(f"{model}In")}}},
                "responses": {"200": _json(f"{model}Out", "updated"),
                              "201": _json(f"{model}Out", "created"),
                              **ERRORS, **BODY_ERRORS}},
        "get": {"operationId": f"get_{entity}", "summary": f"Read a {entity}",
                "parameters": param,
                "responses": {"200": _json(f"{model}Out", "found"),
                              "404": _json("Error", f"no such {entity}"),
                              "422": _json("Error", "the key is not a valid key"),
                              **ERRORS}},
    }


def _target_paths() -> dict[str, Any]:
    from webapp.api_targets import paths

    return paths(BASE, _ref, _json, ERRORS, BODY_ERRORS)


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "FieldBot REST API", "version": "1.0.0",
                 "description": "For an ERP or finance system: upsert customers (with their "
                                "position), deals and invoices, "
                                "record payments, read visits. Every request needs "
                                "`Authorization: Bearer <token>` (FIELDBOT_API_TOKENS)."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {
            f"{BASE}/customers/{{external_id}}": _upsert("customer", "external_id", "Customer",
                                                          "the ERP's key for the customer"),
            f"{BASE}/deals/{{external_id}}": _upsert("deal", "external_id", "Deal",
                                                      "the ERP's key for the deal"),
            f"{BASE}/invoices/{{number}}": _upsert("invoice", "number", "Invoice",
                                                   "the invoice number"),
            f"{BASE}/payments": {"post": {
                "operationId": "record_payment", "summary": "Record a payment on an invoice",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("PaymentIn")}}},
                "responses": {"201": _json("PaymentOut", "recorded"),
                              "200": _json("PaymentOut", "this reference was already "
                                                         "recorded: nothing changed"),
                              **ERRORS, **BODY_ERRORS}}},
            f"{BASE}/visits": {"get": {
                "operationId": "list_visits", "summary": "Visits, oldest first, paged",
                "parameters": [
                    {"name": "since", "in": "query", "required": False,
                     "description": "only visits created at or after this time",
                     "schema": {"type": "string", "format": "date-time"}},
                    {"name": "cursor", "in": "query", "required": False,
                     "description": "next_cursor of the previous page",
                     "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 500,
                                "default": 100}}],
                "responses": {"200": _json("VisitPage", "a page of visits"),
                              "422": _json("Error", "a bad query parameter"),
                              **ERRORS}}},
            **_target_paths(),
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "one of FIELDBOT_API_TOKENS"}},
        },
    }
