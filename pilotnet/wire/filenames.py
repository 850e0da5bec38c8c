"""The one rule for a file name that came from a peer and will name a file on our disk.

Data exchange FILE frames and task results (SEND_RESULTS ``filename``) carry
names chosen by the sender; both are held to this check before any path is
built from them, so there is exactly one place to get it right.  A name is
accepted only if it is already a bare base name that cannot surprise a reader
of the directory listing:

* text that encodes to at most :data:`MAX_NAME_BYTES` bytes of UTF-8 and is
  not empty;
* no ``/``, ``\\`` or ``..`` anywhere, not ``.``, and no leading ``.`` (a
  hidden file, and the prefix of our own partial files);
* no control characters (Unicode ``Cc``: NUL, newline, escape…), no format
  characters (``Cf``: the bidirectional overrides that make ``txt.exe``
  display as ``exe.txt``, zero-width characters) and no line or paragraph
  separators (``Zl``, ``Zp``), none of which belongs in a file name.

A name that breaks a rule is refused, not repaired: quietly rewriting it would
store a file its sender cannot find by name.
"""

import unicodedata

from pilotnet.errors import DecodeError

MAX_NAME_BYTES = 255
_FORBIDDEN_SUBSTRINGS = ("/", "\\", "..")
_FORBIDDEN_CATEGORIES = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))
_HINT = "send the base name of the file, without directories or control characters"


def check_base_name(name: str, what: str = "file name") -> str:
    """Return ``name`` if it is a safe bare file name, else raise :class:`DecodeError` saying why."""
    if not isinstance(name, str):
        raise DecodeError(f"{what} must be text, not {type(name).__name__}")
    if not name:
        raise DecodeError(f"{what} is empty", hint=_HINT)
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise DecodeError(f"{what} {name[:64]!r} cannot be encoded as UTF-8", hint=_HINT) from None
    if size > MAX_NAME_BYTES:
        raise DecodeError(f"{what} is {size} bytes, longer than the limit of {MAX_NAME_BYTES}", hint=_HINT)
    for forbidden in _FORBIDDEN_SUBSTRINGS:
        if forbidden in name:
            raise DecodeError(f"{what} {name!r} contains {forbidden!r}; only a bare file name is accepted",
                              hint=_HINT)
    if name.startswith("."):
        raise DecodeError(f"{what} {name!r} starts with '.'; hidden names are not accepted", hint=_HINT)
    for character in name:
        if unicodedata.category(character) in _FORBIDDEN_CATEGORIES:
            raise DecodeError(f"{what} {name!r} contains the control or format character "
                              f"U+{ord(character):04X}", hint=_HINT)
    return name
