"""``hydra/sweeper=optuna`` given directly (the plugin's own name for its sweeper, as Hydra's documentation
writes it) selects marsunits' sweeper too when the primary config is marsunits' (``configs/``): the plugin's
registered config with ``_target_`` set to :class:`MarsunitsOptunaSweeper`, every other field and default
the plugin's. It got the plugin's class, which leaves a trial that a stop (Ctrl-C, SIGTERM) ended RUNNING
in the study's storage (:mod:`marsunits.optuna_study`).

Written by hand, as a search-path plugin that changes the ConfigStore entry: a file
``configs/hydra/sweeper/optuna.yaml`` is refused by Hydra 1.3 (a config file with the name of a ConfigStore
entry that has a defaults list, as the plugin's has, is "no longer supported"); and the entry cannot be
replaced when this module is imported, since Hydra's plugin scan runs the plugin's own module again
afterwards or before, in the order of ``hydra_plugins``' folders on ``sys.path``. Hydra asks search-path
plugins for the search path after that scan and before any config is read, at every composition. Another
primary config (another Hydra application in the same environment) gets the plugin's entry as registered.
"""

from __future__ import annotations

import copy
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.config_store import ConfigNode, ConfigStore
from hydra.plugins.search_path_plugin import SearchPathPlugin

#: The sweeper of marsunits' studies (``configs/hparams_search/optuna.yaml`` names it too).
TARGET = "hydra_plugins.marsunits_sweeper.optuna_sweeper.MarsunitsOptunaSweeper"

_ENTRY = "hydra/sweeper/optuna.yaml"

#: The plugin's entry as it registered it, kept when replaced (for another primary config).
_registered: list[ConfigNode] = []


class MarsunitsOptunaChoice(SearchPathPlugin):
    """Adds nothing to the search path: sets the ConfigStore entry ``hydra/sweeper/optuna`` for the primary
    config about to be composed (see the module docstring)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        store = ConfigStore.instance()
        try:
            entry = store.load(_ENTRY)
        except Exception:  # noqa: BLE001 - hydra-optuna-sweeper not installed: nothing to select
            return
        if entry.node.get("_target_") != TARGET:
            _registered[:] = [entry]  # the plugin's (registered again by a later plugin scan)
        if not _registered:
            return
        plugin = _registered[0]
        node = plugin.node
        if _is_marsunits_configs(search_path):
            node = copy.deepcopy(plugin.node)
            node._target_ = TARGET
        store.store(
            name="optuna", node=node, group="hydra/sweeper", package=plugin.package, provider=plugin.provider
        )


def _is_marsunits_configs(search_path: ConfigSearchPath) -> bool:
    """Whether the primary config folder is marsunits' (its Optuna study names marsunits' sweeper)."""
    for element in search_path.get_path():
        if element.provider == "main" and not element.path.startswith("pkg://"):
            study = Path(element.path.removeprefix("file://")) / "hparams_search" / "optuna.yaml"
            try:
                return TARGET in study.read_text(encoding="utf-8")
            except OSError:
                return False
    return False
