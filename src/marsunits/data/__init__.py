"""marsunits.data."""
