"""What ``pilotctl`` prints: the ``--json`` envelope, errors, and human formatting.

The JSON is written the way the reference's Go encoder writes a map: keys
sorted, compact, UTF-8 kept, ``<``, ``>``, ``&`` escaped, and whole floats
without a fractional part, so scripts comparing output byte for byte keep
working.
"""

from pilotnet.wire.cjson import dumps
from pilotnet.wire.gojson import GO_ESCAPES


class Output:
    """A command's result: ``data`` for ``--json``, ``text`` (if any) for people.

    A command returning a plain dict gets the default human form, the data
    as indented JSON.  (A plain class: ``dataclasses`` imports ``inspect``,
    which costs a fast command's start-up more than the rest of it.)
    """

    __slots__ = ("data", "text")

    def __init__(self, data: object, text: str | None = None) -> None:
        self.data = data
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Output) and (self.data, self.text) == (other.data, other.text)

    def __repr__(self) -> str:
        return f"Output(data={self.data!r}, text={self.text!r})"


def _go_numbers(value):
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        return {key: _go_numbers(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_go_numbers(item) for item in value]
    return value


def go_json(value, indent=None):
    """``value`` as Go's ``json.Marshal`` (or ``MarshalIndent`` with ``indent``) writes a map."""
    separators = (",", ": ") if indent else (",", ":")
    text = dumps(_go_numbers(value), sort_keys=True, ensure_ascii=False, indent=indent, separators=separators)
    return text.translate(GO_ESCAPES)


def stream_or_collect(context, count, record, collected):
    """One received item of ``listen``/``subscribe``.

    Unbounded (``--count 0``) commands print each item as its own NDJSON line
    under ``--json`` as it arrives; bounded ones keep it for the final envelope.
    """
    if count == 0:
        if context.json:
            context.emit(go_json(record))
    else:
        collected.append(record)


def envelope(data):
    return go_json({"data": data, "status": "ok"})


def error_document(error):
    document = {"code": error.code, "message": error.message, "status": "error"}
    if error.hint:
        document["hint"] = error.hint
    return go_json(document)


def human_error(error):
    lines = [f"error: {error.message}"]
    if error.hint:
        lines.append(f"hint:  {error.hint}")
    return "\n".join(lines)


def format_bytes(count):
    """``512 B``, ``1.5 KB``, ``2.0 MB``, ``1.1 GB`` (1024-based, one decimal)."""
    if count < 1024:
        return f"{count} B"
    for unit in ("KB", "MB", "GB"):
        count /= 1024
        if count < 1024 or unit == "GB":
            return f"{count:.1f} {unit}"


def format_uptime(seconds):
    """``HH:MM:SS`` (hours keep counting past a day)."""
    seconds = int(seconds)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _decimal(whole, fraction, digits):
    fraction_text = str(fraction).rjust(digits, "0").rstrip("0")
    return f"{whole}.{fraction_text}" if fraction_text else str(whole)


def go_duration(seconds):
    """A duration as Go's ``time.Duration.String`` writes it: ``812.5µs``, ``1.234ms``, ``2m3.5s``."""
    nanos = round(seconds * 1e9)
    if nanos == 0:
        return "0s"
    sign, nanos = ("-", -nanos) if nanos < 0 else ("", nanos)
    if nanos < 1000:
        return f"{sign}{nanos}ns"
    if nanos < 1_000_000:
        return f"{sign}{_decimal(nanos // 1000, nanos % 1000, 3)}µs"
    if nanos < 1_000_000_000:
        return f"{sign}{_decimal(nanos // 1_000_000, nanos % 1_000_000, 6)}ms"
    whole_seconds, fraction = divmod(nanos, 1_000_000_000)
    hours, rest = divmod(whole_seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{_decimal(secs, fraction, 9)}s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def table(header, rows):
    """Left-aligned columns two spaces apart, like Go's tabwriter output in the reference."""
    widths = [len(title) for title in header]
    for row in rows:
        widths = [max(width, len(str(cell))) for width, cell in zip(widths, row)]
    lines = []
    for row in [header] + rows:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


PROGRESS_WIDTH = 30


class Progress:
    """A one-line progress bar on stderr, redrawn as the percentage moves.

    Only for a person watching: nothing in ``--json`` mode or when stderr is
    not a terminal (a log file or a pipe would fill with carriage returns).
    """

    def __init__(self, context, total):
        self.context = context
        self.total = total
        self.shown = -1
        stderr = context.stderr
        self.enabled = not context.json and hasattr(stderr, "isatty") and stderr.isatty()

    def update(self, done):
        percent = 100 if self.total == 0 else done * 100 // self.total
        if not self.enabled or percent == self.shown:
            return
        self.shown = percent
        filled = PROGRESS_WIDTH if self.total == 0 else PROGRESS_WIDTH * done // self.total
        bar = "#" * filled + " " * (PROGRESS_WIDTH - filled)
        self.context.note(f"\r  [{bar}] {percent:3d}% {format_bytes(done)}", end="")

    def finish(self):
        """End the bar's line (once), so what follows starts on its own."""
        if self.shown >= 0:
            self.context.note("")
            self.shown = -1


class Exit(Exception):
    """End the run with this exit code and print nothing more (``daemon status --check``)."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code
