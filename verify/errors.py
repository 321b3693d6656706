"""The verifier's one error type."""


class Refused(ValueError):
    """The verifier does not understand (or does not trust) part of the input; nothing is certified."""
