"""One exception type for every problem caused by the user's input.

It subclasses ``ValueError`` so callers that already catch ``ValueError`` keep working; the
CLI catches it and prints the message (which names the problem and the fix) without a traceback.
"""


class CortexmapError(ValueError):
    """Bad input, with a message that names the problem and how to fix it."""
