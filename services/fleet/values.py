"""DynamoDB's wire vocabulary: typed attribute values, their validation, and its errors.

Pure functions only: a JSON value goes in, a canonical attribute value (or a
:class:`DynamoError` carrying the DynamoDB ``__type`` and HTTP status) comes out.
"""

from __future__ import annotations

import base64
import binascii
import decimal
import enum
import json
from collections.abc import Mapping
from typing import Any

from services.errors import DnsraceError

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]

_DDB = "com.amazonaws.dynamodb.v20120810#"
_CORAL = "com.amazon.coral.service#"

MAX_DEPTH = 32
"""Deepest nesting of M and L that DynamoDB accepts."""
MAX_ITEM_BYTES = 400 * 1024
"""DynamoDB's item size limit."""
_MAX_NUMBER_DIGITS = 38
_NUMBER_MAX = decimal.Decimal("9.9999999999999999999999999999999999999E+125")
_NUMBER_MIN = decimal.Decimal("1E-130")
_NUMBER_CONTEXT = decimal.Context(prec=200)


class ErrorKind(enum.Enum):
    """Every error the fleet answers with: (``__type``, HTTP status)."""

    VALIDATION = (_DDB + "ValidationException", 400)
    RESOURCE_NOT_FOUND = (_DDB + "ResourceNotFoundException", 400)
    RESOURCE_IN_USE = (_DDB + "ResourceInUseException", 400)
    SERIALIZATION = (_CORAL + "SerializationException", 400)
    UNKNOWN_OPERATION = (_CORAL + "UnknownOperationException", 400)
    CONDITIONAL_CHECK_FAILED = (_DDB + "ConditionalCheckFailedException", 400)
    THROTTLING = (_DDB + "ThrottlingException", 400)
    SERVICE_UNAVAILABLE = (_DDB + "ServiceUnavailable", 503)
    INTERNAL = (_DDB + "InternalServerError", 500)

    @property
    def type_name(self) -> str:
        return str(self.value[0])

    @property
    def status(self) -> int:
        return int(self.value[1])

    @property
    def label(self) -> str:
        """The bounded metric ``outcome`` label of this error."""
        return self.name.lower()


class DynamoError(DnsraceError):
    """An error answered to the client as ``{"__type": ..., "message": ...}``."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def body(self) -> dict[str, str]:
        return {"__type": self.kind.type_name, "message": self.message}


def invalid(message: str) -> DynamoError:
    return DynamoError(ErrorKind.VALIDATION, message)


def wrong_shape(message: str) -> DynamoError:
    return DynamoError(ErrorKind.SERIALIZATION, message)


def parse_body(body: bytes) -> dict[str, Any]:
    """The request's JSON object; an empty body is ``{}``."""
    if not body.strip():
        return {}
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise wrong_shape(f"Request body is not valid JSON: {type(e).__name__}") from e
    if not isinstance(payload, dict):
        raise wrong_shape("Request body must be a JSON object")
    return payload


def canonical_number(raw: Any) -> str:
    """A DynamoDB number (a string) in canonical form; ``"1.50"`` and ``"15E-1"`` agree."""
    if not isinstance(raw, str):
        raise wrong_shape("A number (N) must be sent as a JSON string")
    text = raw.strip()
    try:
        value = decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise invalid(f"The parameter cannot be converted to a numeric value: {raw[:64]}") from None
    if not value.is_finite():
        raise invalid(f"The parameter cannot be converted to a numeric value: {raw[:64]}")
    if value.is_zero():
        return "0"
    value = value.normalize(_NUMBER_CONTEXT)
    if len(value.as_tuple().digits) > _MAX_NUMBER_DIGITS:
        raise invalid("Attempting to store more than 38 significant digits in a Number")
    if abs(value) > _NUMBER_MAX:
        raise invalid("Number overflow. Attempting to store a number with magnitude larger "
                      "than supported range")
    if abs(value) < _NUMBER_MIN:
        raise invalid("Number underflow. Attempting to store a number with magnitude smaller "
                      "than supported range")
    return format(value, "f")


def _binary(raw: Any) -> str:
    if not isinstance(raw, str):
        raise wrong_shape("A binary value (B) must be sent as a base64 JSON string")
    try:
        base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise wrong_shape("A binary value (B) is not valid base64") from None
    return raw


def _string(raw: Any) -> str:
    if not isinstance(raw, str):
        raise wrong_shape("A string value (S) must be sent as a JSON string")
    return raw


def _set(raw: Any, kind: str, member: Any) -> list[str]:
    if not isinstance(raw, list):
        raise wrong_shape(f"A set ({kind}) must be sent as a JSON array")
    if not raw:
        raise invalid(f"One or more parameter values were invalid: A set ({kind}) "
                      "may not be empty")
    values = [member(v) for v in raw]
    if len(set(values)) != len(values):
        raise invalid("One or more parameter values were invalid: Input collection "
                      f"{kind} contains duplicates.")
    return values


def attribute_value(raw: Any, depth: int = 0) -> AttributeValue:
    """Validate one typed attribute value; return it in canonical form (numbers normalised)."""
    if depth > MAX_DEPTH:
        raise invalid(f"Nesting Levels have exceeded supported limits: {MAX_DEPTH}")
    if not isinstance(raw, dict):
        raise wrong_shape("An attribute value must be a JSON object such as {\"S\": \"text\"}")
    if len(raw) != 1:
        detail = "is empty" if not raw else "has more than one datatypes set"
        raise invalid(f"Supplied AttributeValue {detail}, must contain exactly one of the "
                      "supported datatypes")
    ((kind, value),) = raw.items()
    match kind:
        case "S":
            return {"S": _string(value)}
        case "N":
            return {"N": canonical_number(value)}
        case "B":
            return {"B": _binary(value)}
        case "BOOL":
            if not isinstance(value, bool):
                raise wrong_shape("BOOL must be a JSON boolean")
            return {"BOOL": value}
        case "NULL":
            if value is not True:
                raise invalid("One or more parameter values were invalid: Null attribute value "
                              "types must have the value of true")
            return {"NULL": True}
        case "M":
            if not isinstance(value, dict):
                raise wrong_shape("M must be a JSON object")
            return {"M": {name: attribute_value(v, depth + 1) for name, v in value.items()}}
        case "L":
            if not isinstance(value, list):
                raise wrong_shape("L must be a JSON array")
            return {"L": [attribute_value(v, depth + 1) for v in value]}
        case "SS":
            return {"SS": _set(value, "SS", _string)}
        case "NS":
            return {"NS": _set(value, "NS", canonical_number)}
        case "BS":
            return {"BS": _set(value, "BS", _binary)}
    raise invalid(f"Supplied AttributeValue has an unknown datatype: {str(kind)[:32]}")


def attribute_map(raw: Any, what: str) -> Item:
    """A map of attribute name to value (an ``Item`` or a ``Key``), validated."""
    if not isinstance(raw, dict):
        raise wrong_shape(f"{what} must be a JSON object of attribute name to value")
    item: Item = {}
    for name, value in raw.items():
        if not name:
            raise invalid("One or more parameter values were invalid: An attribute name "
                          "cannot be empty")
        item[name] = attribute_value(value)
    return item


def value_size(value: AttributeValue) -> int:
    """Bytes a value counts for towards the item size limit (DynamoDB's rules, simplified)."""
    ((kind, inner),) = value.items()
    match kind:
        case "S":
            return len(inner.encode())
        case "N":
            return len(inner) // 2 + 1
        case "B":
            return len(base64.b64decode(inner))
        case "BOOL" | "NULL":
            return 1
        case "M":
            return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in inner.items())
        case "L":
            return 3 + sum(value_size(v) + 1 for v in inner)
        case "SS":
            return sum(len(s.encode()) for s in inner)
        case "NS":
            return sum(len(n) // 2 + 1 for n in inner)
        case "BS":
            return sum(len(base64.b64decode(b)) for b in inner)
    raise AssertionError(f"not a canonical attribute value: {kind}")  # pragma: no cover


def item_size(item: Mapping[str, AttributeValue]) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())
