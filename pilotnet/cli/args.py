"""The reference ``pilotctl``'s argument rules, and typed access to what they produce.

* ``--json`` (and our ``--home DIR``) may appear anywhere and apply to the whole run;
* ``--key=value``; ``--key value`` when the next token does not start with ``--``;
  a bare ``--flag`` means ``"true"``; everything else is positional;
* single-dash options are not options (they are positional or values);
* booleans are true for ``true``, ``1`` or empty; durations are Go's syntax
  (``30s``, ``1m30s``, ``250ms``) or a plain number of seconds.
"""

from pilotnet.errors import INVALID_ARGUMENT, DecodeError, PilotError
# Scanned by hand, not with ``re`` (see the module): pilotctl starts once per agent action.
from pilotnet.wire.goduration import decimal_end, parse_go_duration


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
    if text and decimal_end(text, 0) == len(text):
        return float(text)
    try:
        # Go's syntax allows a sign; a duration given to pilotctl never has one (not even "-0s").
        seconds = -1.0 if text.startswith(("-", "+")) else parse_go_duration(text)
    except DecodeError:
        seconds = -1.0
    if seconds < 0:
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
