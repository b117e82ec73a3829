"""The one error type users see: the CLI prints its message on one line and exits non-zero."""


class FnedgeError(Exception):
    """A problem with the user's input (file, flag, model, build), stated in one line."""
