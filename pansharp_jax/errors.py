"""The one exception type for bad user input.

Every loader, validator and public entry point raises :class:`InputError` with a
one-line message that names the problem (missing key, wrong band count, shape
mismatch, NaN/Inf, values out of range, corrupt file). The CLI turns it into a
single line on stderr and exit code 2.
"""


class InputError(ValueError):
    """Bad input data or arguments; the message is one line meant for the user."""
