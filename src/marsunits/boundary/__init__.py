"""marsunits.boundary."""
