"""Reading fields out of a decoded registry request.

JSON gives us Python values of any shape; these readers turn a field into the
type a handler needs or raise :class:`RequestError` naming the field.  Unlike
the reference, which silently turns a malformed number into 0, a wrong type is
refused: the client learns which field is wrong instead of "node 0 not found".
"""

from pilotnet.errors import PilotError, INVALID_ARGUMENT

MAX_U16 = 0xFFFF
MAX_U32 = 0xFFFFFFFF


class RequestError(PilotError):
    """A request the registry refuses; its message goes back to the client."""

    code = INVALID_ARGUMENT


def _integral(value):
    # bool is an int in Python but never a number in JSON.
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def uint(request, field, limit=MAX_U32, *, default=None):
    """An unsigned integer field no larger than ``limit``."""
    value = request.get(field)
    if value is None and default is not None:
        return default
    number = _integral(value)
    if number is None:
        if value is None:
            raise RequestError(f"{field} required")
        raise RequestError(f"invalid {field}: expected an integer, got {type(value).__name__}")
    if not 0 <= number <= limit:
        raise RequestError(f"invalid {field}: {number} is out of range 0..{limit}")
    return number


def integer(request, field, bound):
    """A signed integer field with ``abs(value) <= bound``."""
    value = request.get(field)
    number = _integral(value)
    if number is None:
        if value is None:
            raise RequestError(f"{field} required")
        raise RequestError(f"invalid {field}: expected an integer, got {type(value).__name__}")
    if abs(number) > bound:
        raise RequestError(f"invalid {field}: {number} is out of range -{bound}..{bound}")
    return number


def text(request, field, *, default="", max_length=None):
    """A string field (``default`` when absent or null)."""
    value = request.get(field)
    if value is None:
        return default
    if not isinstance(value, str):
        raise RequestError(f"invalid {field}: expected a string, got {type(value).__name__}")
    if max_length is not None and len(value.encode("utf-8", "replace")) > max_length:
        raise RequestError(f"{field} too long (max {max_length} bytes)")
    return value


def flag(request, field, *, default=False):
    """A boolean field (``default`` when absent or null)."""
    value = request.get(field)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(f"invalid {field}: expected true or false, got {type(value).__name__}")
    return value


def strings(request, field, *, max_items, max_length):
    """A list of strings (empty when absent or null)."""
    value = request.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise RequestError(f"invalid {field}: expected a list of strings")
    if len(value) > max_items:
        raise RequestError(f"too many {field} (max {max_items})")
    for item in value:
        if not isinstance(item, str):
            raise RequestError(f"invalid {field}: expected a list of strings")
        if len(item) > max_length:
            raise RequestError(f"invalid {field}: an entry is too long (max {max_length} chars)")
    return list(value)
