"""Validation of iiko Cloud API bodies against the vendor's own OpenAPI 3.0 schema.

Plain Python, no Django. Used by the iiko emulator on every request it receives and every answer it
gives, and by the client (optionally) on every request it sends, so that what we send to the real
iiko is exactly what the vendor documents.

The vendor schema is OpenAPI 3.0, not JSON Schema, so it is translated once into JSON Schema
2020-12 and then validated with ``jsonschema``:

* ``nullable: true`` becomes ``type: [T, "null"]`` (or "null, else the schema" when there is no type);
* polymorphic parts (order items by ``type``, payments by ``paymentTypeKind``, customers by ``type``,
  command status by ``state``...) are a *base* schema with ``additionalProperties: false`` and
  subtypes that ``allOf`` the base. Plain JSON Schema would reject every valid subtype, because the
  base forbids the subtype's fields. So each subtype is flattened (base fields + its own fields,
  ``additionalProperties: false`` over the union, discriminator pinned to the subtype's value), and
  each reference to the base dispatches on the discriminator value to the flattened subtype;
* the few non-standard ``type`` spellings of the vendor file (``float``, ``bool``...) are normalised.

Public API: ``validate_request(path, body)``, ``validate_response(path, status, body)`` (raise
``SchemaValidationError`` with readable messages), ``request_errors`` / ``response_errors`` (return
the messages), ``get_schema()`` and ``IikoSchema`` for a schema loaded from another file.
The schema file is found at ``<project>/../shared/reference/iikocloud.openapi.json`` unless the
``IIKO_OPENAPI_PATH`` environment variable names another one; it is loaded once, lazily.

Floor: middle, the iiko room (``iiko``); imports neither ``fiscal``, ``payments`` nor ``nekassir``, only the
bottom (``core``) (import-linter, pyproject.toml).
"""

from __future__ import annotations

import copy
import json
import os
import re
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ENV_VAR = "IIKO_OPENAPI_PATH"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATH = PROJECT_ROOT.parent / "shared" / "reference" / "iikocloud.openapi.json"

_COMPONENT_PREFIX = "#/components/schemas/"
_DEFS_URI = "urn:nekassir:iikocloud"
# A validation can report many errors for one bad body; the first few tell the story.
MAX_MESSAGES = 20
_MAX_MESSAGE_CHARS = 300

# Keys of the OpenAPI dialect that mean nothing (or something else) in JSON Schema 2020-12.
_OPENAPI_ONLY_KEYS = {"nullable", "discriminator", "example", "xml", "externalDocs", "x-identifier"}
_TYPE_ALIASES = {
    "float": "number", "double": "number", "int": "integer", "bool": "boolean", "uuid": "string",
}
_JSON_TYPES = {"string", "object", "array", "boolean", "number", "integer", "null"}
# iiko's own date-time format, e.g. "2026-07-01 12:30:00.000".
_IIKO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,7})?$")


class IikoSchemaError(Exception):
    """Base of this module's errors."""


class SchemaUnavailableError(IikoSchemaError):
    """The vendor schema file is missing or unreadable."""


class UnknownOperationError(IikoSchemaError, LookupError):
    """The path (or method) is not in the vendor schema: a programming error, not a bad body."""


class SchemaValidationError(IikoSchemaError, ValueError):
    """A body does not match the vendor schema. ``errors`` are readable one-line messages."""

    def __init__(self, path: str, what: str, errors: list[str]):
        self.path = path
        self.what = what
        self.errors = errors
        shown = "; ".join(errors[:5]) + ("; ..." if len(errors) > 5 else "")
        super().__init__(f"{what} of {path} does not match the iiko schema: {shown}")


# --- OpenAPI 3.0 -> JSON Schema 2020-12 --------------------------------------------------------


def _safe_name(name: str) -> str:
    # Vendor names contain spaces, commas, brackets and backticks (.NET generics): keep $refs boring.
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


class _Translator:
    """Translates the component schemas of one OpenAPI document into JSON Schema ``$defs``."""

    def __init__(self, components: dict[str, Any]):
        self.components = components
        self.safe: dict[str, str] = {}
        for name in components:
            safe = _safe_name(name)
            while safe in self.safe.values():  # never two vendor names onto one key
                safe += "_"
            self.safe[name] = safe

    def ref(self, name: str) -> dict[str, str]:
        return {"$ref": f"{_DEFS_URI}#/$defs/{self.safe[name]}"}

    def defs(self) -> dict[str, Any]:
        return {self.safe[name]: self.component(name) for name in self.components}

    def component(self, name: str) -> Any:
        return self.node(self.components[name], owner=name)

    # A schema node: one recursive pass, keyword by keyword.
    def node(self, schema: Any, owner: str | None = None) -> Any:
        if not isinstance(schema, dict):
            return schema
        if "$ref" in schema:  # OpenAPI 3.0 ignores the siblings of a $ref
            return self.ref(_component_name(schema["$ref"]))
        if "discriminator" in schema and schema["discriminator"].get("mapping"):
            result = self.dispatcher(schema["discriminator"])
        elif "allOf" in schema and _is_object_schema(schema):
            result = self.plain(self.flattened(schema, owner))
        else:
            result = self.plain(schema)
        return _nullable(result) if schema.get("nullable") is True else result

    def plain(self, schema: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key in _OPENAPI_ONLY_KEYS or key.startswith("x-"):
                continue
            if key == "properties":
                out[key] = {prop: self.node(sub) for prop, sub in value.items()}
            elif key in ("items", "not") or (key == "additionalProperties" and isinstance(value, dict)):
                out[key] = self.node(value)
            elif key in ("allOf", "anyOf", "oneOf"):
                out[key] = [self.node(sub) for sub in value]
            elif key == "type":
                out.update(_json_type(value))
            elif key in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(value, bool):
                _draft4_exclusive(out, schema, key, value)
            else:
                out[key] = value
        return out

    def dispatcher(self, discriminator: dict[str, Any]) -> dict[str, Any]:
        """A reference to a polymorphic base: pick the subtype by the discriminator's value."""
        prop = discriminator["propertyName"]
        mapping = discriminator["mapping"]
        return {
            "type": "object",
            "required": [prop],
            "properties": {prop: {"type": "string", "enum": list(mapping)}},
            "allOf": [
                {
                    "if": {"properties": {prop: {"const": value}}, "required": [prop]},
                    "then": self.ref(_component_name(target)),
                }
                for value, target in mapping.items()
            ],
        }

    def flattened(self, schema: dict[str, Any], owner: str | None) -> dict[str, Any]:
        """A subtype: its bases' fields + its own, ``additionalProperties: false`` over the union."""
        properties: dict[str, Any] = {}
        required: list[str] = []
        for part in schema["allOf"]:
            base_name = _component_name(part["$ref"]) if "$ref" in part else None
            base = self.components[base_name] if base_name else part
            if "allOf" in base and _is_object_schema(base):
                base = self.flattened(base, base_name)
            properties.update(base.get("properties", {}))
            required.extend(base.get("required", []))
            pinned = _discriminator_values(base, owner)
            if pinned:
                prop, values = pinned
                properties[prop] = {"type": "string", "enum": values}
        properties.update(schema.get("properties", {}))
        required.extend(schema.get("required", []))
        flat = {k: v for k, v in schema.items() if k not in ("allOf", "properties", "required", "nullable")}
        flat["type"] = "object"
        flat["properties"] = properties
        if required:
            flat["required"] = list(dict.fromkeys(required))
        flat.setdefault("additionalProperties", False)
        return flat


def _component_name(ref: str) -> str:
    if not ref.startswith(_COMPONENT_PREFIX):
        raise IikoSchemaError(f"unsupported $ref {ref!r}")
    return ref[len(_COMPONENT_PREFIX) :]


def _is_object_schema(schema: dict[str, Any]) -> bool:
    # ``allOf: [{$ref}]`` + ``nullable`` is only a way to make a reference nullable; inheritance is an
    # object schema of its own that also lists its bases in ``allOf``.
    return schema.get("type") == "object" or "properties" in schema


def _discriminator_values(base: dict[str, Any], owner: str | None) -> tuple[str, list[str]] | None:
    """For a subtype of a polymorphic base: the discriminator values that select this subtype."""
    discriminator = base.get("discriminator") or {}
    mapping = discriminator.get("mapping") or {}
    values = [value for value, target in mapping.items() if owner and target == _COMPONENT_PREFIX + owner]
    return (discriminator["propertyName"], values) if values else None


def _json_type(value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        return {"type": value}
    value = _TYPE_ALIASES.get(value, value)
    if value in _JSON_TYPES:
        return {"type": value}
    return {}  # a vendor typo ("constant string 'X'", "Array of strings <uuid>"): no type constraint


def _draft4_exclusive(out: dict[str, Any], schema: dict[str, Any], key: str, value: bool) -> None:
    bound = "minimum" if key == "exclusiveMinimum" else "maximum"
    if value and bound in schema:
        out[key] = schema[bound]


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, str) and "allOf" not in schema and "$ref" not in schema:
        schema = {**schema, "type": [kind, "null"]}
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
        return schema
    if not schema:
        return schema
    # "null, or else the schema": unlike anyOf, errors of the else-branch are reported as they are.
    return {"if": {"type": "null"}, "else": schema}


# --- formats -------------------------------------------------------------------------------------


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())

    @checker.checks("uuid", raises=ValueError)
    def _uuid(instance: object) -> bool:
        if not isinstance(instance, str):
            return True
        uuid.UUID(instance)
        return len(instance) == 36 and all(instance[i] == "-" for i in (8, 13, 18, 23))

    @checker.checks("yyyy-MM-dd HH:mm:ss.fff")
    def _iiko_datetime(instance: object) -> bool:
        return not isinstance(instance, str) or bool(_IIKO_DATETIME.match(instance))

    return checker


# --- the schema ----------------------------------------------------------------------------------


class IikoSchema:
    """One loaded vendor schema, with a compiled validator per (path, direction, status), cached."""

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        translator = _Translator(spec.get("components", {}).get("schemas", {}))
        self._translator = translator
        self.document = {"$id": _DEFS_URI, "$defs": translator.defs()}
        resource = Resource.from_contents(self.document, default_specification=DRAFT202012)
        self._registry = Registry().with_resource(_DEFS_URI, resource).crawl()
        self._format_checker = _format_checker()
        self._validators: dict[tuple[str, ...], Draft202012Validator] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> IikoSchema:
        try:
            with open(path, encoding="utf-8") as fh:
                return cls(json.load(fh))
        except (OSError, ValueError) as exc:
            raise SchemaUnavailableError(f"cannot load the iiko OpenAPI schema from {path}: {exc}") from exc

    # --- lookups ---------------------------------------------------------------------------------
    def paths(self) -> list[str]:
        return list(self.spec.get("paths", {}))

    def _operation(self, path: str, method: str) -> dict[str, Any]:
        operation = self.spec.get("paths", {}).get(path, {}).get(method.lower())
        if operation is None:
            raise UnknownOperationError(f"{method.upper()} {path} is not in the iiko schema")
        return operation

    def _body_schema(self, content: dict[str, Any]) -> Any:
        media: dict[str, Any] = content.get("application/json") or next(iter(content.values()), {})
        return media.get("schema")

    def _validator(self, key: tuple[str, ...], openapi_schema: Any) -> Draft202012Validator:
        with self._lock:
            validator = self._validators.get(key)
            if validator is None:
                validator = Draft202012Validator(
                    self._translator.node(copy.deepcopy(openapi_schema)),
                    registry=self._registry,
                    format_checker=self._format_checker,
                )
                self._validators[key] = validator
            return validator

    def request_validator(self, path: str, method: str = "post") -> Draft202012Validator | None:
        """None when the operation takes no body."""
        operation = self._operation(path, method)
        schema = self._body_schema(operation.get("requestBody", {}).get("content", {}))
        if schema is None:
            return None
        return self._validator(("request", method.lower(), path), schema)

    def response_validator(self, path: str, status: int, method: str = "post") -> Draft202012Validator | None:
        """None when the status is documented without a body; KeyError when it is not documented."""
        responses = self._operation(path, method).get("responses", {})
        documented = responses.get(str(status)) or responses.get("default")
        if documented is None:
            raise KeyError(status)
        schema = self._body_schema(documented.get("content", {}))
        if schema is None:
            return None
        return self._validator(("response", method.lower(), path, str(status)), schema)

    # --- validation ------------------------------------------------------------------------------
    def request_errors(self, path: str, body: Any, method: str = "post") -> list[str]:
        validator = self.request_validator(path, method)
        if validator is None:
            return [] if body in (None, b"", "") else ["(body): this method takes no body"]
        return _messages(validator.iter_errors(body))

    def response_errors(self, path: str, status: int, body: Any, method: str = "post") -> list[str]:
        try:
            validator = self.response_validator(path, status, method)
        except KeyError:
            return [f"(status): HTTP {status} is not a documented answer of {path}"]
        if validator is None:
            return []
        return _messages(validator.iter_errors(body))

    def validate_request(self, path: str, body: Any, method: str = "post") -> None:
        errors = self.request_errors(path, body, method)
        if errors:
            raise SchemaValidationError(path, "request", errors)

    def validate_response(self, path: str, status: int, body: Any, method: str = "post") -> None:
        errors = self.response_errors(path, status, body, method)
        if errors:
            raise SchemaValidationError(path, f"HTTP {status} answer", errors)


def _messages(errors: Iterable[ValidationError]) -> list[str]:
    ordered = sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])
    return [_message(error) for error in ordered[:MAX_MESSAGES]]


def _message(error: ValidationError) -> str:
    text = error.message
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[: _MAX_MESSAGE_CHARS - 3] + "..."
    return f"{_json_path(error.absolute_path)}: {text}"


def _json_path(parts: Iterable[Any]) -> str:
    """``order.items[0].productId``: where in the body, the way a person writes it."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(body)"


# --- the default schema, loaded once -----------------------------------------------------------

_default: IikoSchema | None = None
_default_lock = threading.Lock()


def schema_path() -> Path:
    override = os.environ.get(ENV_VAR)
    return Path(override) if override else DEFAULT_PATH


def get_schema() -> IikoSchema:
    """The vendor schema, loaded and translated on first use (about a second), then shared."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = IikoSchema.from_file(schema_path())
    return _default


def request_errors(path: str, body: Any, method: str = "post") -> list[str]:
    return get_schema().request_errors(path, body, method)


def response_errors(path: str, status: int, body: Any, method: str = "post") -> list[str]:
    return get_schema().response_errors(path, status, body, method)


def validate_request(path: str, body: Any, method: str = "post") -> None:
    get_schema().validate_request(path, body, method)


def validate_response(path: str, status: int, body: Any, method: str = "post") -> None:
    get_schema().validate_response(path, status, body, method)
