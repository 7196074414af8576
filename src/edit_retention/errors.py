"""The project's error for bad user input (re-exported by ``io``); no imports, so that any
module can raise it without an import cycle."""


class InputError(ValueError):
    """Bad user input; the message names the file, record and field."""
