"""DynamoDB value validation and table operations, without sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.fleet.tables import TableStore, operation_of
from services.fleet.values import (
    DynamoError,
    ErrorKind,
    attribute_value,
    canonical_number,
    item_size,
    parse_body,
)


def store() -> TableStore:
    return TableStore(clock=lambda: 1_700_000_000.0)


@pytest.mark.parametrize(("raw", "canonical"), [
    ("1", "1"), ("1.50", "1.5"), ("15E-1", "1.5"), ("-0", "0"), ("0.000", "0"),
    ("1E+2", "100"), (" 7 ", "7"), ("-12.3400", "-12.34"),
])
def test_numbers_are_canonical_so_equal_keys_match(raw: str, canonical: str) -> None:
    assert canonical_number(raw) == canonical


@pytest.mark.parametrize("raw", [
    "NaN", "Infinity", "abc", "", "1E+126", "1E-131", "1" * 39,
])
def test_unusable_numbers_are_validation_errors(raw: str) -> None:
    with pytest.raises(DynamoError) as err:
        canonical_number(raw)
    assert err.value.kind is ErrorKind.VALIDATION


@pytest.mark.parametrize(("raw", "kind"), [
    ({}, ErrorKind.VALIDATION),
    ({"S": "a", "N": "1"}, ErrorKind.VALIDATION),
    ({"X": "a"}, ErrorKind.VALIDATION),
    ({"S": 5}, ErrorKind.SERIALIZATION),
    ({"N": 5}, ErrorKind.SERIALIZATION),
    ({"BOOL": "true"}, ErrorKind.SERIALIZATION),
    ({"NULL": False}, ErrorKind.VALIDATION),
    ({"SS": []}, ErrorKind.VALIDATION),
    ({"NS": ["1", "1.0"]}, ErrorKind.VALIDATION),
    ({"B": "not base64!"}, ErrorKind.SERIALIZATION),
    ({"M": []}, ErrorKind.SERIALIZATION),
    ("S", ErrorKind.SERIALIZATION),
])
def test_bad_attribute_values_are_rejected_with_their_kind(raw: Any, kind: ErrorKind) -> None:
    with pytest.raises(DynamoError) as err:
        attribute_value(raw)
    assert err.value.kind is kind
    assert err.value.body()["__type"].endswith("#" + kind.type_name.split("#")[1])


def test_nesting_deeper_than_dynamodb_allows_is_refused() -> None:
    value: dict[str, Any] = {"S": "leaf"}
    for _ in range(33):
        value = {"L": [value]}
    with pytest.raises(DynamoError, match="Nesting Levels"):
        attribute_value(value)


def test_item_size_counts_names_and_values() -> None:
    item = {"pk": {"S": "abc"}, "b": {"B": "AAAA"}, "t": {"BOOL": True}}
    assert item_size(item) == (2 + 3) + (1 + 3) + (1 + 1)


def test_operation_comes_from_the_target_header() -> None:
    assert operation_of("DynamoDB_20120810.GetItem") == "GetItem"
    for bad in (None, "", "GetItem", "DynamoDB_20120810.Scan", "DynamoDB_20111205.GetItem"):
        with pytest.raises(DynamoError) as err:
            operation_of(bad)
        assert err.value.kind is ErrorKind.UNKNOWN_OPERATION


def test_put_replaces_and_returns_old_item_and_tracks_size() -> None:
    tables = store()
    first = {"pk": {"S": "k"}, "v": {"N": "1"}}
    assert tables.dispatch("PutItem", {"TableName": "dnsrace", "Item": first}) == {}
    replaced = tables.dispatch("PutItem", {
        "TableName": "dnsrace", "Item": {"pk": {"S": "k"}, "v": {"N": "2"}},
        "ReturnValues": "ALL_OLD"})
    assert replaced == {"Attributes": first}
    described = tables.dispatch("DescribeTable", {"TableName": "dnsrace"})["Table"]
    assert described["ItemCount"] == 1
    assert described["TableSizeBytes"] == item_size({"pk": {"S": "k"}, "v": {"N": "2"}})
    tables.dispatch("DeleteItem", {"TableName": "dnsrace", "Key": {"pk": {"S": "k"}}})
    described = tables.dispatch("DescribeTable", {"TableName": "dnsrace"})["Table"]
    assert (described["ItemCount"], described["TableSizeBytes"]) == (0, 0)


def test_unsupported_expressions_are_refused_not_ignored() -> None:
    # ConditionExpression is supported; the legacy Expected parameter is refused, not ignored.
    with pytest.raises(DynamoError, match="Expected") as err:
        store().dispatch("PutItem", {"TableName": "dnsrace", "Item": {"pk": {"S": "a"}},
                                     "Expected": {"pk": {"Exists": False}}})
    assert err.value.kind is ErrorKind.VALIDATION
    assert store().dispatch("GetItem", {"TableName": "dnsrace", "Key": {"pk": {"S": "a"}}}) == {}


def test_provisioned_table_needs_throughput() -> None:
    request = {"TableName": "t-1", "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
               "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}]}
    with pytest.raises(DynamoError, match="ReadCapacityUnits"):
        store().dispatch("CreateTable", request)
    created = store().dispatch("CreateTable", {
        **request, "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}})
    assert created["TableDescription"]["ProvisionedThroughput"]["ReadCapacityUnits"] == 5


def test_bodies_that_are_not_json_objects_are_serialization_errors() -> None:
    assert parse_body(b"") == {}
    for body in (b"{", b"[]", b"\xff", b"[" * 50_000, b"1"):
        with pytest.raises(DynamoError) as err:
            parse_body(body)
        assert err.value.kind is ErrorKind.SERIALIZATION


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS", "pk", "x"]),
        inner, max_size=3),
    max_leaves=20,
)
payloads = st.fixed_dictionaries({}, optional={
    "TableName": st.sampled_from(["dnsrace", "nope", "", "x" * 300]) | json_values,
    "Item": json_values, "Key": json_values, "ReturnValues": json_values,
    "KeySchema": json_values, "AttributeDefinitions": json_values, "BillingMode": json_values,
    "Limit": json_values, "ExclusiveStartTableName": json_values,
})


@settings(max_examples=400, deadline=None)
@given(operation=st.sampled_from(["CreateTable", "DescribeTable", "DeleteTable", "ListTables",
                                  "PutItem", "GetItem", "DeleteItem"]),
       payload=payloads)
def test_any_request_gets_an_answer_or_a_dynamodb_error(operation: str,
                                                        payload: dict[str, Any]) -> None:
    try:
        answer = store().dispatch(operation, payload)
    except DynamoError as e:
        assert e.kind is not ErrorKind.INTERNAL
        json.dumps(e.body())
    else:
        json.dumps(answer)
