"""The fleet's one logical table store and the DynamoDB operations on it, without sockets.

:meth:`TableStore.dispatch` takes the operation name (from ``X-Amz-Target``) and the decoded
request object and returns the response object, or raises :class:`DynamoError`.  Every load
balancer of the fleet shares one store, as every DynamoDB front end shares the same tables.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.core.names import DEFAULT_HASH_KEY, DEFAULT_TABLE, TARGET_PREFIX
from services.fleet.expressions import Names, condition, update
from services.fleet.values import (
    MAX_ITEM_BYTES,
    DynamoError,
    ErrorKind,
    Item,
    attribute_map,
    invalid,
    item_size,
    wrong_shape,
)

ACCOUNT = "000000000000"
REGION = "us-east-1"
_TABLE_NAME = re.compile(r"^[a-zA-Z0-9_.-]{3,255}$")
_KEY_TYPES = ("S", "N", "B")
_UNSUPPORTED = {
    "PutItem": ("Expected", "ConditionalOperator"),
    "UpdateItem": ("Expected", "ConditionalOperator", "AttributeUpdates"),
    "GetItem": ("ProjectionExpression", "AttributesToGet", "ExpressionAttributeNames"),
    "DeleteItem": ("Expected", "ConditionalOperator"),
    "CreateTable": ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"),
}
KeyTuple = tuple[tuple[str, str], ...]


def operation_of(target: str | None) -> str:
    """The operation named by an ``X-Amz-Target`` header, or UnknownOperationException."""
    if not target or not target.startswith(TARGET_PREFIX):
        raise DynamoError(ErrorKind.UNKNOWN_OPERATION, "Missing or unknown X-Amz-Target header")
    operation = target[len(TARGET_PREFIX):]
    if operation not in OPERATIONS:
        raise DynamoError(ErrorKind.UNKNOWN_OPERATION,
                          f"dnsrace does not support the operation {operation[:64]!r}")
    return operation


def _get(payload: dict[str, Any], name: str, kind: type, required: bool = False) -> Any:
    value = payload.get(name)
    if value is None:
        if required:
            raise invalid(f"1 validation error detected: Value null at '{name}' failed to "
                          "satisfy constraint: Member must not be null")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise wrong_shape(f"{name} must be a JSON {kind.__name__}")
    return value


def _table_name(payload: dict[str, Any]) -> str:
    name: str = _get(payload, "TableName", str, required=True)
    if not _TABLE_NAME.match(name):
        raise invalid(f"1 validation error detected: Value '{name[:300]}' at 'tableName' failed "
                      "to satisfy constraint: Member must satisfy regular expression pattern: "
                      "[a-zA-Z0-9_.-]+ and have length between 3 and 255")
    return name


def _reject_unsupported(operation: str, payload: dict[str, Any]) -> None:
    for name in _UNSUPPORTED.get(operation, ()):
        if payload.get(name) is not None:
            raise invalid(f"dnsrace does not support {name} in {operation}")


def _return_values(payload: dict[str, Any], allowed: tuple[str, ...] = ("NONE", "ALL_OLD")
                   ) -> str:
    """What the caller asked to get back (``ReturnValues``), ``NONE`` by default."""
    value = _get(payload, "ReturnValues", str) or "NONE"
    if value not in allowed:
        raise invalid("Return values set to invalid value")
    return value


def _check_condition(payload: dict[str, Any], names: Names, old: Item | None) -> None:
    """Raise ConditionalCheckFailedException unless ``ConditionExpression`` holds on ``old``."""
    text = payload.get("ConditionExpression")
    if text is None:
        return
    if not condition(text, names)(old or {}):
        raise DynamoError(ErrorKind.CONDITIONAL_CHECK_FAILED, "The conditional request failed")


def _expression_names(payload: dict[str, Any], *expressions: str) -> Names:
    names = Names.of(payload)
    if (names.names or names.values) and not any(payload.get(e) for e in expressions):
        raise invalid("ExpressionAttributeNames and ExpressionAttributeValues can only be "
                      "specified when using expressions")
    return names


@dataclass(frozen=True)
class KeyPart:
    name: str
    key_type: str  # HASH or RANGE
    attribute_type: str  # S, N or B


@dataclass
class Table:
    name: str
    key: tuple[KeyPart, ...]
    billing: dict[str, Any]
    created: float
    table_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    items: dict[KeyTuple, Item] = field(default_factory=dict)
    size_bytes: int = 0

    def describe(self, status: str = "ACTIVE") -> dict[str, Any]:
        return {
            "TableName": self.name,
            "TableArn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{self.name}",
            "TableId": self.table_id,
            "TableStatus": status,
            "CreationDateTime": self.created,
            "KeySchema": [{"AttributeName": k.name, "KeyType": k.key_type} for k in self.key],
            "AttributeDefinitions": [
                {"AttributeName": k.name, "AttributeType": k.attribute_type} for k in self.key
            ],
            "ItemCount": len(self.items),
            "TableSizeBytes": self.size_bytes,
            **self.billing,
        }

    def store(self, key: KeyTuple, item: Item, old: Item | None) -> None:
        """Replace the item at ``key``, within DynamoDB's item size limit."""
        size = item_size(item)
        if size > MAX_ITEM_BYTES:
            raise invalid("Item size has exceeded the maximum allowed size")
        self.items[key] = item
        self.size_bytes += size - (item_size(old) if old is not None else 0)

    def key_of(self, item: Item, what: str) -> KeyTuple:
        """The primary key of an item (``what="item"``) or of a ``Key`` (``what="key"``)."""
        if what == "key" and set(item) != {k.name for k in self.key}:
            raise invalid("The provided key element does not match the schema")
        parts = []
        for part in self.key:
            value = item.get(part.name)
            if value is None:
                raise invalid("One or more parameter values were invalid: Missing the key "
                              f"{part.name} in the item")
            ((kind, inner),) = value.items()
            if kind != part.attribute_type:
                raise invalid("One or more parameter values were invalid: Type mismatch for key "
                              f"{part.name} expected: {part.attribute_type} actual: {kind}")
            if kind in ("S", "B") and inner == "":
                raise invalid("One or more parameter values are not valid. The AttributeValue "
                              "for a key attribute cannot contain an empty "
                              f"{'string' if kind == 'S' else 'binary'} value. Key: {part.name}")
            parts.append((kind, inner))
        return tuple(parts)


def _key_schema(payload: dict[str, Any]) -> tuple[KeyPart, ...]:
    schema = _get(payload, "KeySchema", list, required=True)
    definitions = _get(payload, "AttributeDefinitions", list, required=True)
    types: dict[str, str] = {}
    for definition in definitions:
        if not isinstance(definition, dict):
            raise wrong_shape("AttributeDefinitions must hold JSON objects")
        name = _get(definition, "AttributeName", str, required=True)
        kind = _get(definition, "AttributeType", str, required=True)
        if kind not in _KEY_TYPES:
            raise invalid(f"Member must satisfy enum value set: [B, N, S] (got {kind[:16]!r})")
        types[name] = kind
    if not 1 <= len(schema) <= 2:
        raise invalid("KeySchema must have one HASH key and at most one RANGE key")
    parts = []
    for index, element in enumerate(schema):
        if not isinstance(element, dict):
            raise wrong_shape("KeySchema must hold JSON objects")
        name = _get(element, "AttributeName", str, required=True)
        key_type = _get(element, "KeyType", str, required=True)
        if key_type != ("HASH" if index == 0 else "RANGE"):
            raise invalid("Invalid KeySchema: The first KeySchemaElement is not a HASH key type"
                          if index == 0 else
                          "Invalid KeySchema: The second KeySchemaElement is not a RANGE key type")
        if name not in types:
            raise invalid("One or more parameter values were invalid: Some index key attributes "
                          "are not defined in AttributeDefinitions")
        parts.append(KeyPart(name, key_type, types[name]))
    if len(types) != len(parts) or len({p.name for p in parts}) != len(parts):
        raise invalid("One or more parameter values were invalid: Number of attributes in "
                      "KeySchema does not exactly match number of attributes defined in "
                      "AttributeDefinitions")
    return tuple(parts)


def _billing(payload: dict[str, Any]) -> dict[str, Any]:
    mode = _get(payload, "BillingMode", str) or "PROVISIONED"
    throughput = _get(payload, "ProvisionedThroughput", dict)
    if mode == "PAY_PER_REQUEST":
        if throughput is not None:
            raise invalid("One or more parameter values were invalid: Neither ReadCapacityUnits "
                          "nor WriteCapacityUnits can be specified when BillingMode is "
                          "PAY_PER_REQUEST")
        return {
            "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
            "ProvisionedThroughput": {"NumberOfDecreasesToday": 0, "ReadCapacityUnits": 0,
                                      "WriteCapacityUnits": 0},
        }
    if mode != "PROVISIONED":
        raise invalid("Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]")
    if throughput is None:
        raise invalid("One or more parameter values were invalid: ReadCapacityUnits and "
                      "WriteCapacityUnits must both be specified when BillingMode is PROVISIONED")
    units = {}
    for name in ("ReadCapacityUnits", "WriteCapacityUnits"):
        value = _get(throughput, name, int, required=True)
        if value < 1:
            raise invalid(f"{name} must be at least 1")
        units[name] = value
    return {
        "BillingModeSummary": {"BillingMode": "PROVISIONED"},
        "ProvisionedThroughput": {"NumberOfDecreasesToday": 0, **units},
    }


class TableStore:
    """Tables in memory; every method is one DynamoDB operation on a decoded request."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.tables: dict[str, Table] = {}
        self.tables[DEFAULT_TABLE] = Table(
            DEFAULT_TABLE, (KeyPart(DEFAULT_HASH_KEY, "HASH", "S"),),
            _billing({"BillingMode": "PAY_PER_REQUEST"}), clock(),
        )

    def dispatch(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        _reject_unsupported(operation, payload)
        handler: Callable[[TableStore, dict[str, Any]], dict[str, Any]] = OPERATIONS[operation]
        return handler(self, payload)

    def table(self, payload: dict[str, Any]) -> Table:
        name = _table_name(payload)
        table = self.tables.get(name)
        if table is None:
            raise DynamoError(ErrorKind.RESOURCE_NOT_FOUND,
                              f"Requested resource not found: Table: {name} not found")
        return table

    def create_table(self, payload: dict[str, Any]) -> dict[str, Any]:
        name = _table_name(payload)
        key, billing = _key_schema(payload), _billing(payload)
        if name in self.tables:
            raise DynamoError(ErrorKind.RESOURCE_IN_USE, f"Table already exists: {name}")
        table = Table(name, key, billing, self.clock())
        self.tables[name] = table
        return {"TableDescription": table.describe()}

    def describe_table(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"Table": self.table(payload).describe()}

    def delete_table(self, payload: dict[str, Any]) -> dict[str, Any]:
        table = self.table(payload)
        del self.tables[table.name]
        return {"TableDescription": table.describe(status="DELETING")}

    def list_tables(self, payload: dict[str, Any]) -> dict[str, Any]:
        start = _get(payload, "ExclusiveStartTableName", str)
        limit = _get(payload, "Limit", int)
        limit = 100 if limit is None else limit
        if not 1 <= limit <= 100:
            raise invalid("1 validation error detected: Value at 'limit' failed to satisfy "
                          "constraint: Member must have value between 1 and 100")
        names = sorted(n for n in self.tables if start is None or n > start)
        out: dict[str, Any] = {"TableNames": names[:limit]}
        if len(names) > limit:
            out["LastEvaluatedTableName"] = names[limit - 1]
        return out

    def put_item(self, payload: dict[str, Any]) -> dict[str, Any]:
        table = self.table(payload)
        want_old = _return_values(payload) == "ALL_OLD"
        names = _expression_names(payload, "ConditionExpression")
        item = attribute_map(_get(payload, "Item", dict, required=True), "Item")
        key = table.key_of(item, "item")
        old = table.items.get(key)
        _check_condition(payload, names, old)
        table.store(key, item, old)
        return {"Attributes": old} if want_old and old is not None else {}

    def update_item(self, payload: dict[str, Any]) -> dict[str, Any]:
        table = self.table(payload)
        wanted = _return_values(payload, ("NONE", "ALL_OLD", "ALL_NEW"))
        names = _expression_names(payload, "ConditionExpression", "UpdateExpression")
        key_item = attribute_map(_get(payload, "Key", dict, required=True), "Key")
        key = table.key_of(key_item, "key")
        change = update(_get(payload, "UpdateExpression", str, required=True), names,
                        tuple(k.name for k in table.key))
        old = table.items.get(key)
        _check_condition(payload, names, old)
        item = change({**key_item, **(old or {})})
        table.store(key, item, old)
        if wanted == "ALL_OLD":
            return {"Attributes": old} if old is not None else {}
        return {"Attributes": item} if wanted == "ALL_NEW" else {}

    def get_item(self, payload: dict[str, Any]) -> dict[str, Any]:
        table = self.table(payload)
        _get(payload, "ConsistentRead", bool)
        key = table.key_of(attribute_map(_get(payload, "Key", dict, required=True), "Key"), "key")
        item = table.items.get(key)
        return {} if item is None else {"Item": item}

    def delete_item(self, payload: dict[str, Any]) -> dict[str, Any]:
        table = self.table(payload)
        want_old = _return_values(payload) == "ALL_OLD"
        names = _expression_names(payload, "ConditionExpression")
        key = table.key_of(attribute_map(_get(payload, "Key", dict, required=True), "Key"), "key")
        _check_condition(payload, names, table.items.get(key))
        old = table.items.pop(key, None)
        if old is not None:
            table.size_bytes -= item_size(old)
        return {"Attributes": old} if want_old and old is not None else {}


OPERATIONS: dict[str, Callable[[TableStore, dict[str, Any]], dict[str, Any]]] = {
    "CreateTable": TableStore.create_table,
    "DescribeTable": TableStore.describe_table,
    "DeleteTable": TableStore.delete_table,
    "ListTables": TableStore.list_tables,
    "PutItem": TableStore.put_item,
    "UpdateItem": TableStore.update_item,
    "GetItem": TableStore.get_item,
    "DeleteItem": TableStore.delete_item,
}
