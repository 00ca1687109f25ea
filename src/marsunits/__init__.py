"""marsunits: map smooth volcanic and rough olivine-rich terrain, and the contact between them, in rover images."""

__version__ = "0.1.0"
