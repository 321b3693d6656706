"""The verifier's one error type, and the one line of any error it reports."""


class Refused(ValueError):
    """The verifier does not understand (or does not trust) part of the input; nothing is certified."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message ("" when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else ""
