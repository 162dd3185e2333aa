"""The one error type every service raises for bad input: what is wrong and where, plus how to fix it.

Entry points (shared/cli.py) print an `InputError` as the single line `<svc> <verb>: error: <message>; fix: <fix>`
and exit with status 2, so each module raises its own subclass (ConfigError, VisDialError, ShardError, ...) with a
message naming the file and the place, and a `fix`. A message written the older way, with the fix after a ';', is
accepted as it is.
"""
from __future__ import annotations


class InputError(ValueError):
    """A config, argument or input file the user must change; `str()` gives "message; fix: ..." when a fix is set."""

    def __init__(self, message: str, fix: str = ""):
        super().__init__(message)
        self.message, self.fix = str(message), str(fix)

    def __str__(self) -> str:
        return f"{self.message}; fix: {self.fix}" if self.fix else self.message

    def default_fix(self, command: str) -> str:
        """The fix shown when none was given: the message may already say it (after a ';'), else point at --help."""
        if "; " in self.message:
            head, _, tail = self.message.rpartition("; ")
            self.message = head
            return tail
        return f"see `python -m services.{command} --help` for every setting with its default"
