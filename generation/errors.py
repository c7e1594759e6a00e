"""Domain exceptions of the generation app, raised by its services and turned into user-facing errors by callers."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from a user (a file, a name, an argument), explained in one paragraph.

    Services raise it before (or instead of) changing anything, or from inside
    the transaction they are writing in so that everything is rolled back.
    Management commands convert it to ``CommandError`` (non-zero exit, no
    traceback); views turn it into a 4xx response. The message is complete
    on its own: it names the file, the line or entry, and what to do.

    ``field``, when set, names the argument the message is about, so that a form can show it under that field.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
