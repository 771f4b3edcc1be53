"""jstyle's exception types for user mistakes.

Anything a user can fix (a bad path, a bad flag value, missing weights) raises a subclass of
`JStyleError`; the command prints its message on one line and exits with status 2. Internal bugs
raise ordinary Python exceptions and keep their traceback.
"""


class JStyleError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


class InputError(JStyleError):
    """A bad image file, flag value or option combination."""


class WeightsError(JStyleError):
    """VGG weights that are missing, corrupt, tampered with or of an unknown format."""


class EnvironmentFault(JStyleError):
    """A fault of the machine rather than the input (disk full, permissions changed during a
    run); the command exits with status 1."""
