"""cortexmap: in-silico neurophysiology and RSA mapping of deep networks onto brains."""

__version__ = "0.1.0"

from cortexmap.errors import CortexmapError

__all__ = ["CortexmapError", "__version__"]
