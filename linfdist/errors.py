"""The one error type for bad input to linfdist: a file, a name or a setting the user gave.

``LinfdistError`` is a ValueError (so callers that catch ValueError keep working) whose message
is one line meant for the user; the CLI prints it and exits with status 2. Any other exception
reaching the CLI is a bug in linfdist, reported as one (exit status 70).
"""


class LinfdistError(ValueError):
    """Bad input, explained in one line."""
