"""The reference ``pilotctl``'s argument rules, and typed access to what they produce.

* ``--json`` (and our ``--home DIR``) may appear anywhere and apply to the whole run;
* ``--key=value``; ``--key value`` when the next token does not start with ``--``;
  a bare ``--flag`` means ``"true"``; everything else is positional;
* single-dash options are not options (they are positional or values);
* booleans are true for ``true``, ``1`` or empty; durations are Go's syntax
  (``30s``, ``1m30s``, ``250ms``) or a plain number of seconds.
"""

from pilotnet.errors import INVALID_ARGUMENT, PilotError

# Scanned by hand, not with ``re``: importing ``re`` (and the ``enum`` it imports) is about 7 ms,
# more than half of a bare interpreter's start, and pilotctl starts once per agent action.
_DIGITS = "0123456789"
# Longest first where one unit is the start of another ("ms" before "m").
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _number_end(text, start):
    """Where the decimal number (``5``, ``5.``, ``5.25``, ``.25``) at ``text[start:]`` ends; ``start`` if none."""
    end = start
    while end < len(text) and text[end] in _DIGITS:
        end += 1
    if end < len(text) and text[end] == ".":
        fraction = end + 1
        while fraction < len(text) and text[fraction] in _DIGITS:
            fraction += 1
        if end > start or fraction > end + 1:
            return fraction
    return end


def _is_whole_number(text):
    return text.isascii() and text.isdigit()


def invalid(message, hint=None):
    return PilotError(message, code=INVALID_ARGUMENT, hint=hint)


def split_globals(argv):
    """``(json_mode, home or None, remaining argv)``: the options that apply to every command."""
    json_mode, home, rest = False, None, []
    tokens = iter(argv)
    for token in tokens:
        if token == "--json":
            json_mode = True
        elif token.startswith("--home="):
            home = token[len("--home="):]
        elif token == "--home":
            home = next(tokens, "")
        else:
            rest.append(token)
    return json_mode, home, rest


def parse_duration(text, what):
    """Seconds from ``30s`` / ``2m`` / ``1h30m`` / ``1.5``; ``invalid_argument`` otherwise."""
    if text and _number_end(text, 0) == len(text):
        return float(text)
    position, seconds = 0, 0.0
    while position < len(text):
        number_end = _number_end(text, position)
        unit = next((unit for unit in _UNIT_SECONDS if text.startswith(unit, number_end)), None)
        if number_end == position or unit is None:
            break
        seconds += float(text[position:number_end]) * _UNIT_SECONDS[unit]
        position = number_end + len(unit)
    if position == 0 or position != len(text):
        raise invalid(f'invalid duration "{text}" for {what}: use e.g. 30s, 2m or a number of seconds')
    return seconds


def parse_number(text, what, maximum):
    """A whole number from 0 to ``maximum`` written in ASCII digits; ``invalid_argument`` otherwise."""
    if not _is_whole_number(text) or int(text) > maximum:
        raise invalid(f'invalid {what} "{text}": expected a number from 0 to {maximum}')
    return int(text)


class Args:
    """One command's flags and positional arguments."""

    def __init__(self, tokens):
        self.flags = {}
        self.positional = []
        index = 0
        while index < len(tokens):
            token = tokens[index]
            if token.startswith("--") and len(token) > 2:
                key, equals, value = token[2:].partition("=")
                if not equals:
                    if index + 1 < len(tokens) and not tokens[index + 1].startswith("--"):
                        index += 1
                        value = tokens[index]
                    else:
                        value = "true"
                self.flags[key] = value
            else:
                self.positional.append(token)
            index += 1

    def has(self, name):
        return name in self.flags

    def text(self, name, default=None):
        return self.flags.get(name, default)

    def boolean(self, name):
        return self.flags.get(name, "false") in ("true", "1", "")

    def integer(self, name, default, minimum=0):
        if name not in self.flags:
            return default
        value = self.flags[name]
        if not _is_whole_number(value.removeprefix("-")) or int(value) < minimum:
            raise invalid(f'invalid value "{value}" for --{name}: expected a whole number >= {minimum}')
        return int(value)

    def duration(self, name, default):
        if name not in self.flags:
            return default
        return parse_duration(self.flags[name], f"--{name}")
