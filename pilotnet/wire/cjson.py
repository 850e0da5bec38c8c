"""JSON through CPython's C accelerator, without importing the ``json`` package.

``import json`` imports ``re``, and ``re`` imports ``enum``: about 7 ms of
CPU, more than half of what the bare interpreter takes to start.  pilotctl
starts once per agent action and only reads and writes JSON documents of
plain values, so this module calls the C functions ``json`` itself calls for
that (``_json.make_encoder`` and ``_json.make_scanner``, the fast paths of
``json.dumps`` and ``json.loads``) and leaves out what needs ``re``: the
pure-Python fallbacks and whitespace skipping by regular expression.  The
output is what ``json.dumps`` writes for the same arguments; an interpreter
without ``_json`` uses the ``json`` package.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

try:
    import _json
except ImportError:  # pragma: no cover - every CPython has it; other interpreters use json
    _json = None  # type: ignore[assignment]

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _float_text(value: float) -> str:
    """A float as ``json`` writes it (``NaN``/``Infinity`` are refused by ``allow_nan=False``)."""
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == float("-inf"):
        return "-Infinity"
    return float.__repr__(value)


def _refuse(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: object, *, ensure_ascii: bool = True, sort_keys: bool = False,
          separators: tuple[str, str] | None = None, indent: int | None = None,
          allow_nan: bool = True) -> str:
    """``json.dumps(value, ...)`` for these arguments, by the same C encoder."""
    if separators is None:
        separators = (",", ": ") if indent is not None else (", ", ": ")
    if _json is None:  # pragma: no cover
        import json
        return json.dumps(value, ensure_ascii=ensure_ascii, sort_keys=sort_keys,
                          separators=separators, indent=indent, allow_nan=allow_nan)
    item_separator, key_separator = separators
    escape = _json.encode_basestring_ascii if ensure_ascii else _json.encode_basestring
    encoder = _json.make_encoder(None if indent is not None else {}, _refuse, escape, None,
                                 key_separator, item_separator, sort_keys, False, allow_nan)
    if indent is None:
        return "".join(encoder(value, 0))
    # The C encoder writes no indentation (json switches to Python code for it): lay out
    # containers here and let the C encoder write each scalar and key.
    lines: list[str] = []
    _indented(value, encoder, escape, " " * indent, "", item_separator, key_separator,
              sort_keys, lines, set())
    return "".join(lines)


def compact_encoder(*, ensure_ascii: bool = True, sort_keys: bool = False,
                    allow_nan: bool = True) -> Callable[[object], str]:
    """``json.dumps(value, separators=(",", ":"), ...)`` as one C encoder built once, for hot paths.

    :func:`dumps` builds its encoder per call, as ``json.dumps`` does (a few
    microseconds a call, a third of encoding a small reply).  This one keeps
    no record of open containers (``check_circular=False``): a record shared
    between calls would keep stale entries after an error; so a value that
    contains itself raises ``RecursionError`` instead of ``ValueError``.
    """
    if _json is None:  # pragma: no cover
        import json
        encoder = json.JSONEncoder(ensure_ascii=ensure_ascii, sort_keys=sort_keys,
                                   separators=(",", ":"), allow_nan=allow_nan,
                                   check_circular=False)
        return encoder.encode
    escape = _json.encode_basestring_ascii if ensure_ascii else _json.encode_basestring
    chunks = _json.make_encoder(None, _refuse, escape, None, ":", ",", sort_keys, False, allow_nan)

    def encode(value: object) -> str:
        return "".join(chunks(value, 0))

    return encode


def _indented(value: object, encoder: Callable[..., Any], escape: Callable[[str], str],
              step: str, pad: str, item_separator: str, key_separator: str, sort_keys: bool,
              out: list[str], open_containers: set[int]) -> None:
    if isinstance(value, dict):
        items: Any = value.items()
        opening, closing = "{", "}"
    elif isinstance(value, (list, tuple)):
        items = value
        opening, closing = "[", "]"
    else:
        out.append("".join(encoder(value, 0)))
        return
    if not value:
        out.append(opening + closing)
        return
    if id(value) in open_containers:
        raise ValueError("Circular reference detected")
    open_containers.add(id(value))
    inner = pad + step
    out.append(opening)
    if isinstance(value, dict):
        items = sorted(items) if sort_keys else items
    for index, item in enumerate(items):
        out.append(("\n" if index == 0 else item_separator + "\n") + inner)
        if opening == "{":
            key, item = item
            out.append(escape(_key_text(key)) + key_separator)
        _indented(item, encoder, escape, step, inner, item_separator, key_separator,
                  sort_keys, out, open_containers)
    out.append("\n" + pad + closing)
    open_containers.discard(id(value))


def _key_text(key: object) -> str:
    """A dict key as ``json`` turns it into a JSON string."""
    if isinstance(key, str):
        return key
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, float):
        return _float_text(key)
    if isinstance(key, int):
        return int.__repr__(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


class _ScanContext:
    """The settings ``_json.make_scanner`` reads, as a ``json.JSONDecoder`` would hold them."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    def __init__(self, parse_constant: Callable[[str], object]) -> None:
        self.parse_constant = parse_constant


def make_loads(parse_constant: Callable[[str], object] = _CONSTANTS.__getitem__
               ) -> Callable[[str], Any]:
    """A ``loads(text)`` that parses one JSON document as ``json.loads`` does; errors are ``ValueError``.

    ``parse_constant`` is called for ``NaN``, ``Infinity`` and ``-Infinity``
    (by default their float values, as ``json.loads`` gives them).
    """
    if _json is None:  # pragma: no cover
        import json
        return json.JSONDecoder(parse_constant=parse_constant).decode
    # typeshed types the context as the scanner itself; any object with these attributes will do.
    scan = _json.make_scanner(_ScanContext(parse_constant))  # type: ignore[arg-type]

    def loads(text: str) -> Any:
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            value, end = scan(text, start)
        except StopIteration as stop:
            raise ValueError(f"Expecting value: char {stop.value}") from None
        if text[end:].strip(_WHITESPACE):
            raise ValueError(f"Extra data: char {end}")
        return value

    return loads


loads = make_loads()
