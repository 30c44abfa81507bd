"""The one exception type for mistakes a user can fix.

A ``UsageError`` carries a single line that names the problem and the fix. The CLI
prints it without a traceback; library callers can catch it like any ``ValueError``.
"""


class UsageError(ValueError):
    """Bad input (config, data, workdir, checkpoint) with a message saying how to fix it."""
