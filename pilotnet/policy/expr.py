"""The expression language of network policies: the part of expr-lang that policy rules use.

The reference evaluates a rule's ``match`` with expr-lang (github.com/expr-lang/expr),
a Go library.  No well-kept Python library parses that grammar (the PyPI
names that claim it are a 0.1 release and a wrapper around the Go code), so
this module is a small parser and evaluator of our own for the subset the
language definition documents, written for hostile input: the text comes from
whoever administers a network, and every member's daemon runs it on every
connection.  It never hands anything to Python's ``eval``; it is sans-IO
(``now`` is a parameter) and bounded: :data:`MAX_LENGTH` characters,
:data:`MAX_DEPTH` levels of nesting, :data:`MAX_STEPS` evaluation steps,
:data:`MAX_STRING` characters in any string it builds, integers kept to Go's
64 bits, and regular expressions run by RE2 (linear time, and the syntax Go's
``regexp`` uses, so a pattern means what it means in the reference).

What is understood (expr-lang's precedence, lowest first):

* ``c ? a : b``;
* ``or`` / ``||``; ``and`` / ``&&``;
* ``==  !=  <  <=  >  >=``, ``in`` / ``not in``, ``matches``, ``contains``,
  ``startsWith``, ``endsWith`` (each of the last four also after ``not``);
* ``+  -``; ``*  /  %``; unary ``not`` / ``!``; unary ``-`` / ``+``;
  ``**`` / ``^`` (right-associative); ``??`` (nil coalescing);
* literals: integers (``42``, ``0x2A``, ``1_000``), floats (``0.5``, ``.5``,
  ``1e3``), strings (``"a"``, ``'a'``, `````raw`````), ``true``, ``false``,
  ``nil``, arrays ``[1, 2]``; ``//`` and ``/* */`` comments;
* variables, member access ``a.b``, indexing ``a[0]`` / ``a["k"]``;
* functions: the policy engine's ``has_tag(tags, tag)``, ``duration("5m")``
  (seconds) and ``since(unix_seconds)`` (seconds elapsed), and expr-lang's
  ``len``, ``abs``, ``int``, ``float``, ``string``, ``lower``, ``upper``,
  ``trim``, ``hasPrefix``, ``hasSuffix``, ``min``, ``max``.

A variable the environment lacks is ``nil`` (the reference compiles with
``AllowUndefinedVariables``), and so is a missing map key or a member of nil.
Maps literals, ranges, pipes, closures (``all``, ``filter``...) and method
calls are not understood and fail to compile with a message saying so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from pilotnet.errors import INVALID_ARGUMENT, PilotError
from pilotnet.wire.goduration import parse_go_duration

MAX_LENGTH = 4096
MAX_DEPTH = 48
#: Nodes on the longest path of the syntax tree: a chain such as ``1+1+...`` nests no parentheses but
#: deepens the tree (and the evaluator's recursion) with every operator.
MAX_TREE_DEPTH = 128
MAX_STEPS = 10_000
MAX_STRING = 64 * 1024
MAX_PATTERN = 1024
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


class ExpressionError(PilotError):
    """An expression that does not compile, or that failed while evaluated (wrong types, a budget spent)."""

    code = INVALID_ARGUMENT


# -- tokens ----------------------------------------------------------------------------

_NAME, _NUMBER, _STRING, _OPERATOR, _END = "name", "number", "string", "operator", "end"
_OPERATORS = ("**", "??", "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "+", "-", "*", "/", "%", "^",
              "(", ")", "[", "]", ",", ".", "?", ":")
_WORD_OPERATORS = frozenset(("and", "or", "not", "in", "matches", "contains", "startsWith", "endsWith"))
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0", "a": "\a", "b": "\b",
            "f": "\f", "v": "\v"}


class _Token:
    __slots__ = ("kind", "value", "position")

    def __init__(self, kind: str, value: object, position: int) -> None:
        self.kind = kind
        self.value = value
        self.position = position

    def is_operator(self, *names: str) -> bool:
        return self.kind == _OPERATOR and self.value in names


def _error(message: str, position: int | None = None) -> ExpressionError:
    where = "" if position is None else f" (at character {position + 1})"
    return ExpressionError(f"{message}{where}", hint="see docs/networks.md for the expression language")


def _tokens(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    index, length = 0, len(source)
    while index < length:
        char = source[index]
        if char in " \t\r\n":
            index += 1
        elif source.startswith("//", index):
            end = source.find("\n", index)
            index = length if end < 0 else end
        elif source.startswith("/*", index):
            end = source.find("*/", index + 2)
            if end < 0:
                raise _error("unterminated comment", index)
            index = end + 2
        elif char.isascii() and (char.isdigit() or (char == "." and index + 1 < length
                                                     and source[index + 1].isascii()
                                                     and source[index + 1].isdigit())):
            index = _number(source, index, tokens)
        elif char in "\"'`":
            index = _string(source, index, tokens)
        elif char.isascii() and (char.isalpha() or char in "_$"):
            start = index
            while index < length and source[index].isascii() and (source[index].isalnum() or source[index] in "_$"):
                index += 1
            word = source[start:index]
            tokens.append(_Token(_OPERATOR if word in _WORD_OPERATORS else _NAME, word, start))
        else:
            for operator in _OPERATORS:
                if source.startswith(operator, index):
                    tokens.append(_Token(_OPERATOR, operator, index))
                    index += len(operator)
                    break
            else:
                raise _error(f"unexpected character {char!r}", index)
    tokens.append(_Token(_END, None, length))
    return tokens


def _number(source: str, start: int, tokens: list[_Token]) -> int:
    index, length = start, len(source)

    def digits(allowed: str) -> None:
        nonlocal index
        while index < length and (source[index] in allowed or source[index] == "_"):
            index += 1

    if source.startswith(("0x", "0X"), index):
        index += 2
        digits("0123456789abcdefABCDEF")
        text, base, is_float = source[start + 2:index], 16, False
    else:
        digits("0123456789")
        is_float = False
        if index + 1 < length and source[index] == "." and source[index + 1].isascii() and source[index + 1].isdigit():
            index += 1
            digits("0123456789")
            is_float = True
        if index < length and source[index] in "eE":
            index += 1
            if index < length and source[index] in "+-":
                index += 1
            digits("0123456789")
            is_float = True
        text, base = source[start:index], 10
    cleaned = text.replace("_", "")
    try:
        value: object = float(cleaned) if is_float else int(cleaned, base)
    except ValueError:
        raise _error(f"invalid number {source[start:index]!r}", start) from None
    if isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
        raise _error(f"integer {source[start:index]} does not fit 64 bits", start)
    if isinstance(value, float) and not math.isfinite(value):
        raise _error(f"number {source[start:index]} is out of range", start)
    tokens.append(_Token(_NUMBER, value, start))
    return index


def _string(source: str, start: int, tokens: list[_Token]) -> int:
    quote, index, length = source[start], start + 1, len(source)
    parts: list[str] = []
    while True:
        if index >= length:
            raise _error("unterminated string", start)
        char = source[index]
        if char == quote:
            tokens.append(_Token(_STRING, "".join(parts), start))
            return index + 1
        if char == "\\" and quote != "`":
            if index + 1 >= length:
                raise _error("unterminated string", start)
            escape = source[index + 1]
            if escape in _ESCAPES:
                parts.append(_ESCAPES[escape])
                index += 2
                continue
            width = {"x": 2, "u": 4, "U": 8}.get(escape)
            code = source[index + 2:index + 2 + width] if width else ""
            if not width or len(code) != width or any(c not in "0123456789abcdefABCDEF" for c in code) \
                    or int(code, 16) > 0x10FFFF:
                raise _error(f"invalid escape \\{escape} in string", index)
            parts.append(chr(int(code, 16)))
            index += 2 + width
            continue
        parts.append(char)
        index += 1


# -- syntax tree -------------------------------------------------------------------------

class Node:
    """One node of a parsed expression; :meth:`evaluate` spends one step of the budget per node."""

    __slots__ = ()

    def evaluate(self, scope: _Scope) -> object:
        raise NotImplementedError


class _Literal(Node):
    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def evaluate(self, scope: _Scope) -> object:
        scope.step()
        return self.value


class _Array(Node):
    __slots__ = ("items",)

    def __init__(self, items: list[Node]) -> None:
        self.items = items

    def evaluate(self, scope: _Scope) -> object:
        scope.step()
        return [item.evaluate(scope) for item in self.items]


class _Variable(Node):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def evaluate(self, scope: _Scope) -> object:
        scope.step()
        return scope.variables.get(self.name)


class _Member(Node):
    __slots__ = ("target", "key", "position")

    def __init__(self, target: Node, key: Node, position: int) -> None:
        self.target = target
        self.key = key
        self.position = position

    def evaluate(self, scope: _Scope) -> object:
        scope.step()
        target, key = self.target.evaluate(scope), self.key.evaluate(scope)
        if target is None:
            return None
        if isinstance(target, Mapping):
            return target.get(key) if isinstance(key, str) else None
        if isinstance(target, (list, str)) and _is_int(key):
            assert isinstance(key, int)
            index = key + len(target) if key < 0 else key
            if not 0 <= index < len(target):
                raise _error(f"index {key} out of range (length {len(target)})", self.position)
            return target[index]
        raise _error(f"cannot read {_show(key)} of {_type_name(target)}", self.position)


class _Call(Node):
    __slots__ = ("name", "function", "arguments", "position")

    def __init__(self, name: str, function: Callable[..., object], arguments: list[Node], position: int) -> None:
        self.name = name
        self.function = function
        self.arguments = arguments
        self.position = position

    def evaluate(self, scope: _Scope) -> object:
        scope.step()
        values = [argument.evaluate(scope) for argument in self.arguments]
        try:
            return self.function(scope, *values)
        except ExpressionError as error:
            raise _error(f"{self.name}(): {error.message}", self.position) from None


class _Unary(Node):
    __slots__ = ("operator", "operand", "position")

    def __init__(self, operator: str, operand: Node, position: int) -> None:
        self.operator = operator
        self.operand = operand
        self.position = position

    def evaluate(self, scope: _Scope) -> object:
        scope.step()
        value = self.operand.evaluate(scope)
        if self.operator in ("not", "!"):
            if not isinstance(value, bool):
                raise _error(f"{self.operator} needs a bool, not {_type_name(value)}", self.position)
            return not value
        if not _is_number(value):
            raise _error(f"unary {self.operator} needs a number, not {_type_name(value)}", self.position)
        assert isinstance(value, (int, float))
        return _checked(-value if self.operator == "-" else value, self.position)


class _Logical(Node):
    """``and``/``or``, short-circuiting as in Go: the right side runs only when it decides."""

    __slots__ = ("conjunction", "left", "right", "position")

    def __init__(self, conjunction: bool, left: Node, right: Node, position: int) -> None:
        self.conjunction = conjunction
        self.left = left
        self.right = right
        self.position = position

    def evaluate(self, scope: _Scope) -> object:
        scope.step()
        left = self._bool(self.left.evaluate(scope))
        if left != self.conjunction:
            return left
        return self._bool(self.right.evaluate(scope))

    def _bool(self, value: object) -> bool:
        if not isinstance(value, bool):
            word = "and" if self.conjunction else "or"
            raise _error(f"{word} needs bools, not {_type_name(value)}", self.position)
        return value


class _Coalesce(Node):
    __slots__ = ("left", "right")

    def __init__(self, left: Node, right: Node) -> None:
        self.left = left
        self.right = right

    def evaluate(self, scope: _Scope) -> object:
        scope.step()
        value = self.left.evaluate(scope)
        return self.right.evaluate(scope) if value is None else value


class _Conditional(Node):
    __slots__ = ("condition", "then", "otherwise", "position")

    def __init__(self, condition: Node, then: Node, otherwise: Node, position: int) -> None:
        self.condition = condition
        self.then = then
        self.otherwise = otherwise
        self.position = position

    def evaluate(self, scope: _Scope) -> object:
        scope.step()
        condition = self.condition.evaluate(scope)
        if not isinstance(condition, bool):
            raise _error(f"?: needs a bool condition, not {_type_name(condition)}", self.position)
        return (self.then if condition else self.otherwise).evaluate(scope)


class _Binary(Node):
    __slots__ = ("operator", "left", "right", "position", "negated")

    def __init__(self, operator: str, left: Node, right: Node, position: int, negated: bool = False) -> None:
        self.operator = operator
        self.left = left
        self.right = right
        self.position = position
        self.negated = negated

    def evaluate(self, scope: _Scope) -> object:
        scope.step()
        left, right = self.left.evaluate(scope), self.right.evaluate(scope)
        try:
            result = _BINARY_FUNCTIONS[self.operator](scope, left, right)
        except ExpressionError as error:
            raise _error(error.message, self.position) from None
        return (not result) if self.negated else result


# -- evaluation helpers ------------------------------------------------------------------

class _Scope:
    """What one evaluation sees: the variables, the time, and the step budget it may still spend."""

    __slots__ = ("variables", "now", "steps")

    def __init__(self, variables: Mapping[str, object], now: float) -> None:
        self.variables = variables
        self.now = now
        self.steps = MAX_STEPS

    def step(self, count: int = 1) -> None:
        self.steps -= count
        if self.steps < 0:
            raise _error(f"evaluation took more than {MAX_STEPS} steps")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _type_name(value: object) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _checked(value: int | float, position: int | None = None) -> int | float:
    if isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
        raise _error("integer overflow (results must fit 64 bits)", position)
    if isinstance(value, float) and math.isnan(value):
        raise _error("arithmetic result is not a number", position)
    return value


def _string_result(text: str) -> str:
    if len(text) > MAX_STRING:
        raise _error(f"string longer than {MAX_STRING} characters")
    return text


def _numbers(operator: str, left: object, right: object) -> tuple[int | float, int | float]:
    if not (_is_number(left) and _is_number(right)):
        raise ExpressionError(f"{operator} needs numbers, not {_type_name(left)} and {_type_name(right)}")
    assert isinstance(left, (int, float)) and isinstance(right, (int, float))
    return left, right


def _strings(operator: str, left: object, right: object) -> tuple[str, str]:
    if not (isinstance(left, str) and isinstance(right, str)):
        raise ExpressionError(f"{operator} needs strings, not {_type_name(left)} and {_type_name(right)}")
    return left, right


def _equal(scope: _Scope, left: object, right: object) -> bool:
    scope.step()
    if _is_number(left) and _is_number(right):
        return left == right
    if isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        return len(left) == len(right) and all(_equal(scope, a, b) for a, b in zip(left, right))
    if type(left) is not type(right) and not (isinstance(left, Mapping) and isinstance(right, Mapping)):
        return False
    if isinstance(left, Mapping):
        scope.step(len(left))
    return left == right


def _add(scope: _Scope, left: object, right: object) -> object:
    if isinstance(left, str) and isinstance(right, str):
        return _string_result(left + right)
    if isinstance(left, list) and isinstance(right, list):
        scope.step(len(left) + len(right))
        return left + right
    a, b = _numbers("+", left, right)
    return _checked(a + b)


def _subtract(scope: _Scope, left: object, right: object) -> object:
    a, b = _numbers("-", left, right)
    return _checked(a - b)


def _multiply(scope: _Scope, left: object, right: object) -> object:
    a, b = _numbers("*", left, right)
    return _checked(a * b)


def _divide(scope: _Scope, left: object, right: object) -> object:
    """expr-lang's ``/`` always gives a float; dividing by zero gives ±Inf as in Go (NaN is refused)."""
    a, b = _numbers("/", left, right)
    if b == 0:
        if a == 0:
            raise ExpressionError("0 / 0 is not a number")
        return math.copysign(math.inf, a) * (math.copysign(1.0, b))
    return _checked(float(a) / float(b))


def _modulo(scope: _Scope, left: object, right: object) -> object:
    if not (_is_int(left) and _is_int(right)):
        raise ExpressionError(f"% needs integers, not {_type_name(left)} and {_type_name(right)}")
    assert isinstance(left, int) and isinstance(right, int)
    if right == 0:
        raise ExpressionError("integer divide by zero")
    remainder = abs(left) % abs(right)
    return -remainder if left < 0 else remainder  # Go's %: the sign of the dividend


def _power(scope: _Scope, left: object, right: object) -> object:
    a, b = _numbers("**", left, right)
    try:
        return _checked(math.pow(a, b))
    except (OverflowError, ValueError):
        raise ExpressionError(f"{_show(a)} ** {_show(b)} is out of range") from None


def _compare(operator: str) -> Callable[[_Scope, object, object], object]:
    def compare(scope: _Scope, left: object, right: object) -> object:
        if not ((_is_number(left) and _is_number(right)) or (isinstance(left, str) and isinstance(right, str))):
            raise ExpressionError(f"{operator} needs two numbers or two strings, "
                                  f"not {_type_name(left)} and {_type_name(right)}")
        a, b = left, right
        if operator == "<":
            return a < b  # type: ignore[operator]
        if operator == "<=":
            return a <= b  # type: ignore[operator]
        if operator == ">":
            return a > b  # type: ignore[operator]
        return a >= b  # type: ignore[operator]
    return compare


def _member_of(scope: _Scope, left: object, right: object) -> object:
    if isinstance(right, Mapping):
        return isinstance(left, str) and left in right
    if isinstance(right, (list, tuple)):
        return any(_equal(scope, left, item) for item in right)
    if right is None:
        return False
    raise ExpressionError(f"in needs an array or a map on the right, not {_type_name(right)}")


def _matches(scope: _Scope, left: object, right: object) -> object:
    text, pattern = _strings("matches", left, right)
    scope.step(len(text) // 64 + 1)
    return _regex(pattern).search(text) is not None


_PATTERNS: dict[str, Any] = {}


def _regex(pattern: str) -> Any:
    """The compiled RE2 pattern, from a small cache (a pattern built at run time is compiled once).

    RE2 is imported at the first pattern, not with this module: every daemon
    loads the policy engine at start, few evaluate a ``matches``, and the
    import is about 1% of a daemon's start (docs/performance.md).
    """
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        if len(pattern) > MAX_PATTERN:
            raise ExpressionError(f"regular expression longer than {MAX_PATTERN} characters")
        # google-re2 ships no type information: mypy reads it as Any (ignore_missing_imports).
        import re2

        options = re2.Options()
        options.log_errors = False  # a bad pattern is the user's error, reported as such, not logged by RE2
        try:
            compiled = re2.compile(pattern, options)
        except re2.error as error:
            raise ExpressionError(f"invalid regular expression {_show(pattern)}: {error}") from None
        if len(_PATTERNS) >= 256:
            _PATTERNS.clear()
        _PATTERNS[pattern] = compiled
    return compiled


def _contains(scope: _Scope, left: object, right: object) -> object:
    text, part = _strings("contains", left, right)
    return part in text


def _starts_with(scope: _Scope, left: object, right: object) -> object:
    text, part = _strings("startsWith", left, right)
    return text.startswith(part)


def _ends_with(scope: _Scope, left: object, right: object) -> object:
    text, part = _strings("endsWith", left, right)
    return text.endswith(part)


_BINARY_FUNCTIONS: dict[str, Callable[[_Scope, object, object], object]] = {
    "==": _equal, "!=": lambda scope, a, b: not _equal(scope, a, b),
    "<": _compare("<"), "<=": _compare("<="), ">": _compare(">"), ">=": _compare(">="),
    "+": _add, "-": _subtract, "*": _multiply, "/": _divide, "%": _modulo, "**": _power,
    "in": _member_of, "matches": _matches, "contains": _contains, "startsWith": _starts_with,
    "endsWith": _ends_with,
}

# -- functions -----------------------------------------------------------------------------


def _has_tag(scope: _Scope, tags: object, tag: object) -> object:
    if tags is None:
        return False
    if not isinstance(tags, (list, tuple)) or not isinstance(tag, str):
        raise ExpressionError(f"needs an array of tags and a tag, not {_type_name(tags)} and {_type_name(tag)}")
    scope.step(len(tags))
    return tag in tags


def _duration(scope: _Scope, text: object) -> object:
    if not isinstance(text, str):
        raise ExpressionError(f"needs a string such as \"5m\", not {_type_name(text)}")
    try:
        return parse_go_duration(text)
    except PilotError as error:
        raise ExpressionError(error.message) from None


def _since(scope: _Scope, timestamp: object) -> object:
    if not _is_number(timestamp):
        raise ExpressionError(f"needs unix seconds, not {_type_name(timestamp)}")
    assert isinstance(timestamp, (int, float))
    return 0.0 if timestamp <= 0 else float(scope.now - timestamp)


def _length(scope: _Scope, value: object) -> object:
    if isinstance(value, (str, list, tuple, Mapping)):
        return len(value)
    raise ExpressionError(f"needs a string, an array or a map, not {_type_name(value)}")


def _absolute(scope: _Scope, value: object) -> object:
    if not _is_number(value):
        raise ExpressionError(f"needs a number, not {_type_name(value)}")
    assert isinstance(value, (int, float))
    return _checked(abs(value))


def _to_int(scope: _Scope, value: object) -> object:
    if _is_number(value):
        assert isinstance(value, (int, float))
        if isinstance(value, float) and not math.isfinite(value):
            raise ExpressionError(f"{value} is not a whole number")
        return _checked(int(value))
    if isinstance(value, str):
        try:
            return _checked(int(value.strip(), 10))
        except ValueError:
            raise ExpressionError(f"{_show(value)} is not an integer") from None
    raise ExpressionError(f"needs a number or a string, not {_type_name(value)}")


def _to_float(scope: _Scope, value: object) -> object:
    if _is_number(value):
        assert isinstance(value, (int, float))
        return float(value)
    if isinstance(value, str) and len(value) <= 64:
        try:
            return _checked(float(value))
        except ValueError:
            pass
    raise ExpressionError(f"{_show(value)} is not a number")


def _to_string(scope: _Scope, value: object) -> object:
    if isinstance(value, str):
        return value
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        return str(value)
    raise ExpressionError(f"cannot make a string of {_type_name(value)}")


def _text(function: Callable[[str], object]) -> Callable[[_Scope, object], object]:
    def apply(scope: _Scope, value: object) -> object:
        if not isinstance(value, str):
            raise ExpressionError(f"needs a string, not {_type_name(value)}")
        return function(value)
    return apply


def _text_pair(function: Callable[[str, str], object]) -> Callable[[_Scope, object, object], object]:
    def apply(scope: _Scope, left: object, right: object) -> object:
        a, b = _strings("", left, right)
        return function(a, b)
    return apply


def _extreme(pick: Callable[..., object]) -> Callable[..., object]:
    def apply(scope: _Scope, *values: object) -> object:
        if len(values) == 1 and isinstance(values[0], (list, tuple)):
            values = tuple(values[0])
            scope.step(len(values))
        if not values or not all(_is_number(value) for value in values):
            raise ExpressionError("needs numbers")
        return pick(values)
    return apply


#: name -> (function, fewest arguments, most arguments or None for any number)
FUNCTIONS: dict[str, tuple[Callable[..., object], int, int | None]] = {
    "has_tag": (_has_tag, 2, 2), "duration": (_duration, 1, 1), "since": (_since, 1, 1),
    "len": (_length, 1, 1), "abs": (_absolute, 1, 1), "int": (_to_int, 1, 1), "float": (_to_float, 1, 1),
    "string": (_to_string, 1, 1), "lower": (_text(str.lower), 1, 1), "upper": (_text(str.upper), 1, 1),
    "trim": (_text(str.strip), 1, 1), "hasPrefix": (_text_pair(str.startswith), 2, 2),
    "hasSuffix": (_text_pair(str.endswith), 2, 2), "min": (_extreme(min), 1, 64), "max": (_extreme(max), 1, 64),
}

# -- parser ----------------------------------------------------------------------------------

#: Binary operators: (precedence, right-associative), expr-lang's numbers.
_BINARY = {
    "or": (10, False), "||": (10, False), "and": (15, False), "&&": (15, False),
    "==": (20, False), "!=": (20, False), "<": (20, False), ">": (20, False), "<=": (20, False),
    ">=": (20, False), "in": (20, False), "matches": (20, False), "contains": (20, False),
    "startsWith": (20, False), "endsWith": (20, False),
    "+": (30, False), "-": (30, False), "*": (60, False), "/": (60, False), "%": (60, False),
    "**": (100, True), "^": (100, True), "??": (500, False),
}
_UNARY = {"not": 50, "!": 50, "-": 90, "+": 90}
_NEGATABLE = ("in", "matches", "contains", "startsWith", "endsWith")


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.index = 0
        self.depth = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != _END:
            self.index += 1
        return token

    def expect(self, operator: str) -> None:
        if not self.token.is_operator(operator):
            raise _error(f"expected {operator!r}, found {self._describe(self.token)}", self.token.position)
        self.advance()

    @staticmethod
    def _describe(token: _Token) -> str:
        return "end of expression" if token.kind == _END else repr(token.value)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error(f"expression nested deeper than {MAX_DEPTH} levels", self.token.position)

    def parse(self) -> Node:
        node = self.conditional()
        if self.token.kind != _END:
            raise _error(f"unexpected {self._describe(self.token)}", self.token.position)
        return node

    def conditional(self) -> Node:
        self.enter()
        condition = self.binary(0)
        if self.token.is_operator("?"):
            position = self.advance().position
            then = self.conditional()
            self.expect(":")
            otherwise = self.conditional()
            condition = _Conditional(condition, then, otherwise, position)
        self.depth -= 1
        return condition

    def binary(self, floor: int) -> Node:
        self.enter()
        left = self.unary()
        while True:
            token, negated = self.token, False
            name = token.value if token.kind == _OPERATOR else None
            if name == "not":
                following = self.tokens[self.index + 1]
                if not (following.kind == _OPERATOR and following.value in _NEGATABLE):
                    break
                name, negated = str(following.value), True
            if not isinstance(name, str) or name not in _BINARY:
                break
            precedence, right_associative = _BINARY[name]
            if precedence < floor:
                break
            self.advance()
            if negated:
                self.advance()
            right = self.binary(precedence if right_associative else precedence + 1)
            left = self._combine(name, left, right, token.position, negated)
        self.depth -= 1
        return left

    @staticmethod
    def _combine(name: str, left: Node, right: Node, position: int, negated: bool) -> Node:
        if name in ("and", "&&", "or", "||"):
            return _Logical(name in ("and", "&&"), left, right, position)
        if name == "??":
            return _Coalesce(left, right)
        if name == "matches" and isinstance(right, _Literal):
            if not isinstance(right.value, str):
                raise _error("matches needs a string pattern", position)
            try:
                _regex(right.value)
            except ExpressionError as error:
                raise _error(error.message, position) from None
        return _Binary("**" if name == "^" else name, left, right, position, negated)

    def unary(self) -> Node:
        token = self.token
        if token.kind == _OPERATOR and isinstance(token.value, str) and token.value in _UNARY:
            self.advance()
            operand = self.binary(_UNARY[token.value])
            return _Unary(token.value, operand, token.position)
        return self.postfix(self.primary())

    def primary(self) -> Node:
        token = self.advance()
        if token.kind in (_NUMBER, _STRING):
            return _Literal(token.value)
        if token.kind == _NAME:
            assert isinstance(token.value, str)
            if token.value in ("true", "false"):
                return _Literal(token.value == "true")
            if token.value == "nil":
                return _Literal(None)
            if self.token.is_operator("("):
                return self.call(token)
            return _Variable(token.value)
        if token.is_operator("("):
            self.enter()
            node = self.conditional()
            self.expect(")")
            self.depth -= 1
            return node
        if token.is_operator("["):
            return _Array(self.arguments("]"))
        raise _error(f"unexpected {self._describe(token)}", token.position)

    def arguments(self, closing: str) -> list[Node]:
        self.enter()
        items: list[Node] = []
        while not self.token.is_operator(closing):
            items.append(self.conditional())
            if not self.token.is_operator(closing):
                self.expect(",")
        self.advance()
        self.depth -= 1
        return items

    def call(self, token: _Token) -> Node:
        name = str(token.value)
        entry = FUNCTIONS.get(name)
        if entry is None:
            raise _error(f"unknown function {name}()", token.position)
        self.advance()
        arguments = self.arguments(")")
        function, fewest, most = entry
        if len(arguments) < fewest or (most is not None and len(arguments) > most):
            wanted = str(fewest) if fewest == most else f"{fewest} or more"
            raise _error(f"{name}() takes {wanted} argument(s), not {len(arguments)}", token.position)
        return _Call(name, function, arguments, token.position)

    def postfix(self, node: Node) -> Node:
        while True:
            token = self.token
            if token.is_operator("."):
                self.advance()
                name = self.advance()
                if name.kind not in (_NAME, _OPERATOR) or not isinstance(name.value, str) \
                        or not name.value[:1].isalpha():
                    raise _error("expected a name after '.'", token.position)
                if self.token.is_operator("("):
                    raise _error(f"method calls such as .{name.value}() are not supported", token.position)
                node = _Member(node, _Literal(name.value), token.position)
            elif token.is_operator("["):
                self.advance()
                self.enter()
                key = self.conditional()
                self.depth -= 1
                if self.token.is_operator(":"):
                    raise _error("slices are not supported", self.token.position)
                self.expect("]")
                node = _Member(node, key, token.position)
            else:
                return node


class Expression:
    """A compiled expression: parse once with :func:`compile_expression`, evaluate many times."""

    __slots__ = ("source", "_root")

    def __init__(self, source: str, root: Node) -> None:
        self.source = source
        self._root = root

    def __repr__(self) -> str:
        return f"<Expression {self.source[:40]!r}>"

    def evaluate(self, variables: Mapping[str, object], now: float) -> object:
        """The expression's value over ``variables`` at ``now`` (unix seconds, for ``since``)."""
        try:
            return self._root.evaluate(_Scope(variables, now))
        except RecursionError:  # MAX_TREE_DEPTH keeps evaluation far from the limit; kept so nothing can crash a caller
            raise _error("expression too deep to evaluate") from None

    def test(self, variables: Mapping[str, object], now: float) -> bool:
        """The expression's value, which must be a bool (a rule's ``match``)."""
        value = self.evaluate(variables, now)
        if not isinstance(value, bool):
            raise _error(f"expression returned {_type_name(value)}, want bool")
        return value


def compile_expression(source: str) -> Expression:
    """Parse ``source``; :class:`ExpressionError` naming what is wrong and where."""
    if not isinstance(source, str):
        raise _error(f"an expression must be a string, not {_type_name(source)}")
    if len(source) > MAX_LENGTH:
        raise _error(f"expression longer than {MAX_LENGTH} characters")
    if not source.strip():
        raise _error("empty expression")
    root = _Parser(source).parse()
    if _tree_depth(root) > MAX_TREE_DEPTH:
        raise _error(f"expression nested deeper than {MAX_TREE_DEPTH} operations; split it or use parentheses")
    return Expression(source, root)


def _children(node: Node) -> list[Node]:
    if isinstance(node, _Array):
        return list(node.items)
    if isinstance(node, _Call):
        return list(node.arguments)
    return [child for name in _CHILD_SLOTS.get(type(node), ()) if isinstance(child := getattr(node, name), Node)]


_CHILD_SLOTS: dict[type, tuple[str, ...]] = {
    _Member: ("target", "key"), _Unary: ("operand",), _Logical: ("left", "right"), _Coalesce: ("left", "right"),
    _Conditional: ("condition", "then", "otherwise"), _Binary: ("left", "right"),
}


def _tree_depth(root: Node) -> int:
    """The longest path from ``root`` to a leaf, walked without recursion (the tree may be deep)."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in _children(node))
    return deepest
