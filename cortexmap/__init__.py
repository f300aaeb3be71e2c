"""cortexmap: in-silico neurophysiology and representational similarity analysis for deep networks."""

__version__ = "0.1.0"

from cortexmap.errors import CortexmapError

__all__ = ["CortexmapError", "__version__"]
