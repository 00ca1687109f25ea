"""marsunits: map smooth volcanic and rough olivine-rich terrain, and their contact, in rover images."""

__version__ = "0.1.0"
