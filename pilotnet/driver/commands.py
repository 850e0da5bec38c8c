"""The control socket's AMP commands, kept importable from here for code written before :mod:`pilotnet.control`.

The schema lives in :mod:`pilotnet.control.schema` and the AMP classes
generated from it in :mod:`pilotnet.control.commands`; new code imports those.
"""

from pilotnet.control.commands import *  # noqa: F401,F403
from pilotnet.control.commands import (  # noqa: F401
    ALL, COMMAND_FAILED, CREDIT_BATCH, MAX_CHUNK, WRITE_CREDIT, Command, CommandFailed, SchemaArgument,
    UnansweredFastPath, fast_path,
)
from pilotnet.control.schema import JSON, LongBytes  # noqa: F401
