"""Camera models that map pixels to the ground plane (see ``pinhole`` for the frames used everywhere)."""

from marsunits.boundary.camera.pinhole import PinholeCamera

__all__ = ["PinholeCamera"]
