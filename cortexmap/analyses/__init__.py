"""The published analyses, one module each, on one shared contract (:mod:`.base`)."""
