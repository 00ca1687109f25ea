"""marsunits' Hydra plugins (Hydra instantiates plugins of the ``hydra_plugins`` package only)."""
