"""marsunits.boundary: the contact between the two units, in the image and on the ground.

* :mod:`~marsunits.boundary.extract`: contact lines from class probabilities or label masks;
* :mod:`~marsunits.boundary.metrics`: boundary precision / recall / F1 and mean distance;
* :mod:`~marsunits.boundary.camera`: pinhole, CAHV, CAHVOR and CAHVORE camera models and their JSON files;
* :mod:`~marsunits.boundary.projection`: contact lines onto the ground plane;
* :mod:`~marsunits.boundary.contact_map`: ground contacts of many images merged into a map;
* :mod:`~marsunits.boundary.contact_io`: the contact GeoJSON format.
"""

from typing import TYPE_CHECKING

import lazy_loader

# Loaded on first use (lazy_loader): the contact code imports SciPy (1.5 s), and ``python -m
# marsunits.boundary.camera.from_label`` imports this package before its own stop guard is up
# (quiet_interrupt_at_start): a Ctrl-C there printed a traceback, a SIGTERM ended the command silently.
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "contact_io": ["ContactLine", "read_contacts", "write_contacts"],
        "contact_map": ["build_contact_map"],
        "extract": ["ContactConfig", "bridge_ignore_gaps", "contacts_from_mask", "extract_contacts"],
        "metrics": ["boundary_scores", "line_scores"],
        "projection": ["add_ground"],
    },
)
__all__ = [
    "ContactConfig",
    "ContactLine",
    "add_ground",
    "boundary_scores",
    "bridge_ignore_gaps",
    "build_contact_map",
    "contacts_from_mask",
    "extract_contacts",
    "line_scores",
    "read_contacts",
    "write_contacts",
]

if TYPE_CHECKING:  # the names for type checkers
    from marsunits.boundary.contact_io import ContactLine, read_contacts, write_contacts
    from marsunits.boundary.contact_map import build_contact_map
    from marsunits.boundary.extract import (
        ContactConfig,
        bridge_ignore_gaps,
        contacts_from_mask,
        extract_contacts,
    )
    from marsunits.boundary.metrics import boundary_scores, line_scores
    from marsunits.boundary.projection import add_ground
