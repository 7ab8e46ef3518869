"""DynamoDB condition and update expressions, the subset conditional writes need. Pure.

Condition: ``attribute_exists(p)``, ``attribute_not_exists(p)``, comparisons ``= <> < <= > >=``
between paths and ``:values``, ``AND``, ``OR``, ``NOT`` and parentheses.
Update: ``SET p = operand [+|- operand], ...`` and ``REMOVE p, ...``. Paths are top-level
attribute names (``name`` or ``#alias``); nested paths are refused with a clear error.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.fleet.values import AttributeValue, Item, attribute_value, canonical_number, invalid

_TOKEN = re.compile(r"\s*(?:(?P<op><>|<=|>=|=|<|>|\(|\)|,|\+|-)|(?P<value>:[A-Za-z0-9_]+)"
                    r"|(?P<alias>#[A-Za-z0-9_]+)|(?P<word>[A-Za-z_][A-Za-z0-9_]*))")
_COMPARATORS = ("=", "<>", "<", "<=", ">", ">=")
_MAX_EXPRESSION = 4096
Condition = Callable[[Item], bool]


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


@dataclass(frozen=True)
class Names:
    """``ExpressionAttributeNames`` and ``ExpressionAttributeValues`` of one request."""

    names: dict[str, str]
    values: dict[str, AttributeValue]

    @staticmethod
    def of(payload: dict[str, Any]) -> Names:
        names = payload.get("ExpressionAttributeNames") or {}
        values = payload.get("ExpressionAttributeValues") or {}
        if not isinstance(names, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in names.items()):
            raise invalid("ExpressionAttributeNames must map #names to attribute names")
        if not isinstance(values, dict):
            raise invalid("ExpressionAttributeValues must map :values to attribute values")
        return Names(names, {k: attribute_value(v) for k, v in values.items()})


def _tokens(text: Any, what: str) -> list[_Token]:
    if not isinstance(text, str) or not text.strip():
        raise invalid(f"Invalid {what}: The expression can not be empty;")
    if len(text) > _MAX_EXPRESSION:
        raise invalid(f"Invalid {what}: expression longer than {_MAX_EXPRESSION} characters")
    tokens, position = [], 0
    while position < len(text.rstrip()):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise invalid(f"Invalid {what}: Syntax error; token: \"{text[position:][:16]}\"")
        kind = match.lastgroup or "op"
        tokens.append(_Token(kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: Any, what: str, names: Names) -> None:
        self.tokens = _tokens(text, what)
        self.at = 0
        self.what = what
        self.names = names

    def peek(self) -> _Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def next(self) -> _Token:
        token = self.peek()
        if token is None:
            raise invalid(f"Invalid {self.what}: Syntax error; token: <EOF>")
        self.at += 1
        return token

    def expect(self, text: str) -> None:
        token = self.next()
        if token.text.upper() != text:
            raise invalid(f"Invalid {self.what}: Syntax error; token: \"{token.text}\", "
                          f"expected \"{text}\"")

    def keyword(self, *words: str) -> str | None:
        token = self.peek()
        if token is not None and token.kind == "word" and token.text.upper() in words:
            self.at += 1
            return token.text.upper()
        return None

    def done(self) -> None:
        if self.peek() is not None:
            raise invalid(f"Invalid {self.what}: Syntax error; token: \"{self.next().text}\"")

    def path(self) -> str:
        token = self.next()
        if token.kind == "alias":
            if token.text not in self.names.names:
                raise invalid(f"Invalid {self.what}: An expression attribute name used in the "
                              f"document path is not defined; attribute name: {token.text}")
            return self.names.names[token.text]
        if token.kind != "word":
            raise invalid(f"Invalid {self.what}: Syntax error; token: \"{token.text}\"")
        return token.text

    def operand(self) -> Callable[[Item], AttributeValue | None]:
        token = self.peek()
        if token is not None and token.kind == "value":
            self.at += 1
            if token.text not in self.names.values:
                raise invalid(f"Invalid {self.what}: An expression attribute value used in "
                              f"expression is not defined; attribute value: {token.text}")
            value = self.names.values[token.text]
            return lambda _: value
        name = self.path()
        return lambda item: item.get(name)

    # condition := disjunct (OR disjunct)*
    def condition(self) -> Condition:
        left = self.conjunct()
        while self.keyword("OR"):
            left = _either(left, self.conjunct())
        return left

    def conjunct(self) -> Condition:
        left = self.negation()
        while self.keyword("AND"):
            left = _both(left, self.negation())
        return left

    def negation(self) -> Condition:
        if self.keyword("NOT"):
            inner = self.negation()
            return lambda item: not inner(item)
        return self.primary()

    def primary(self) -> Condition:
        token = self.peek()
        if token is not None and token.text == "(":
            self.at += 1
            inner = self.condition()
            self.expect(")")
            return inner
        function = self.keyword("ATTRIBUTE_EXISTS", "ATTRIBUTE_NOT_EXISTS")
        if function is not None:
            self.expect("(")
            name = self.path()
            self.expect(")")
            exists = function == "ATTRIBUTE_EXISTS"
            return lambda item: (name in item) == exists
        left = self.operand()
        comparator = self.next().text
        if comparator not in _COMPARATORS:
            raise invalid(f"Invalid {self.what}: Syntax error; token: \"{comparator}\"")
        right = self.operand()
        return lambda item: _compare(left(item), comparator, right(item))


def _either(a: Condition, b: Condition) -> Condition:
    return lambda item: a(item) or b(item)


def _both(a: Condition, b: Condition) -> Condition:
    return lambda item: a(item) and b(item)


def _compare(a: AttributeValue | None, comparator: str, b: AttributeValue | None) -> bool:
    if a is None or b is None:
        return comparator == "<>" and (a is None) != (b is None)
    if comparator == "=":
        return a == b
    if comparator == "<>":
        return a != b
    ((kind_a, inner_a),), ((kind_b, inner_b),) = a.items(), b.items()
    if kind_a != kind_b or kind_a not in ("N", "S", "B"):
        return False
    x: Any = decimal.Decimal(inner_a) if kind_a == "N" else inner_a
    y: Any = decimal.Decimal(inner_b) if kind_b == "N" else inner_b
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[comparator]


def condition(text: Any, names: Names) -> Condition:
    """A ``ConditionExpression`` as a predicate on the current item (``{}`` when none)."""
    parser = _Parser(text, "ConditionExpression", names)
    predicate = parser.condition()
    parser.done()
    return predicate


Update = Callable[[Item], Item]


def update(text: Any, names: Names, key_names: tuple[str, ...]) -> Update:
    """An ``UpdateExpression`` as a function from the old item to the new one."""
    parser = _Parser(text, "UpdateExpression", names)
    steps: list[Callable[[Item], None]] = []
    touched: set[str] = set()
    while parser.peek() is not None:
        clause = parser.keyword("SET", "REMOVE")
        if clause is None:
            raise invalid(f"Invalid UpdateExpression: Syntax error; token: "
                          f"\"{parser.next().text}\"")
        while True:
            name = parser.path()
            if name in key_names:
                raise invalid("One or more parameter values were invalid: Cannot update "
                              f"attribute {name}. This attribute is part of the key")
            if name in touched:
                raise invalid("Invalid UpdateExpression: Two document paths overlap with each "
                              f"other; path one: [{name}], path two: [{name}]")
            touched.add(name)
            steps.append(_set(parser, name) if clause == "SET" else _remove(name))
            token = parser.peek()
            if token is None or token.text != ",":
                break
            parser.next()

    def apply(old: Item) -> Item:
        new = dict(old)
        for step in steps:
            step(new)
        return new

    return apply


def _remove(name: str) -> Callable[[Item], None]:
    def remove(item: Item) -> None:
        item.pop(name, None)
    return remove


def _set(parser: _Parser, name: str) -> Callable[[Item], None]:
    parser.expect("=")
    first = parser.operand()
    token = parser.peek()
    if token is None or token.text not in ("+", "-"):
        def assign(item: Item) -> None:
            value = first(item)
            if value is None:
                raise invalid("The provided expression refers to an attribute that does not "
                              "exist in the item")
            item[name] = value
        return assign
    sign = parser.next().text
    second = parser.operand()

    def arithmetic(item: Item) -> None:
        a, b = first(item), second(item)
        if a is None or b is None or "N" not in a or "N" not in b:
            raise invalid("An operand in the update expression has an incorrect data type")
        x, y = decimal.Decimal(a["N"]), decimal.Decimal(b["N"])
        item[name] = {"N": canonical_number(str(x + y if sign == "+" else x - y))}
    return arithmetic
