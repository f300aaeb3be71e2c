"""Probes: in-silico neurophysiology experiments on network units.

Each module is one experiment: ``receptive_field`` (where each feature-map position looks),
``center_periphery`` (central-bias and background-selective unit groups against foveal and
peripheral brain regions), and the orientation, lesion, contrast and shift-invariance probes.
Import from the submodules, e.g. ``from cortexmap.probes.receptive_field import receptive_fields``.
"""
