"""Catch a misspelt command-line option before Hydra does, and say which option was probably meant.

Hydra answers ``python predict.py inputdir=images/`` with "Could not override 'inputdir' ... To append to
your config use +inputdir=images/": a fix that silently adds an option nothing reads. This check runs first
and only on the top-level name of each ``key=value`` override (``inputdir``, ``max_epoch``), against the
primary config's keys and the config groups; nested names (``trainer.max_epoch``) are left to Hydra, whose
message names them. Overrides that add, force or delete (``+key``, ``++key``, ``~key``) and Hydra's own flags
(``--cfg job``, ``-m``) are not checked.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

__all__ = ["exit_on_unknown_option", "unknown_option"]


def _defaults(primary: DictConfig) -> dict[str, str | None]:
    """The primary config's config groups and their default options (``_self_`` left out)."""
    groups: dict[str, str | None] = {}
    for entry in primary.get("defaults", []):
        if isinstance(entry, str):
            continue  # _self_
        for group, option in entry.items():
            groups[str(group).split("@", 1)[0].split(" ")[-1].lstrip("/")] = (
                option if isinstance(option, str) else None
            )
    return groups


def _names(config_dir: Path, config_name: str) -> tuple[set[str], list[str]]:
    """Top-level names (keys and groups, plus ``hydra``), and ``group.key`` of each group default's keys."""
    primary = OmegaConf.load(config_dir / f"{config_name}.yaml")
    if not isinstance(primary, DictConfig):
        return {"hydra"}, []
    groups = _defaults(primary)
    top = (set(primary) - {"defaults"}) | set(groups) | {"hydra"}
    nested = []
    for group, option in groups.items():
        path = config_dir / group / f"{option}.yaml"
        if option is None or group == "hydra" or not path.is_file():
            continue
        node = OmegaConf.load(path)
        if isinstance(node, DictConfig):
            nested += [f"{group}.{key!s}" for key in node if key not in ("defaults", "_target_")]
    return top, nested


def unknown_option(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for the first override whose top-level name the config does not have, or None.

    The suggestion is the closest top-level name, else the closest key of a group's default option
    (``max_epoch`` -> ``trainer.max_epochs``).

    Args:
        argv: Command-line arguments after the program name.
        config_dir: The folder of the Hydra configs.
        config_name: The primary config (``train``, ``predict``) without ``.yaml``.
    """
    if any(
        a.startswith(("-cn", "-cp", "-cd", "--config-name", "--config-path", "--config-dir")) for a in argv
    ):
        return None  # another primary config or config folder: Hydra checks the names itself
    names: tuple[set[str], list[str]] | None = None
    for arg in argv:
        if arg.startswith(("-", "+", "~")) or "=" not in arg:
            continue
        name = arg.split("=", 1)[0].split("@", 1)[0].split(".", 1)[0].split("/", 1)[0]  # hydra/launcher=...
        names = names or _names(config_dir, config_name)
        top, nested = names
        if name in top:
            continue
        # A known name that starts the typed one (tile in tile_size) beats a merely similar one (batch_size).
        prefixed = sorted((n for n in top if len(n) >= 3 and name.startswith(n)), key=len, reverse=True)
        guess = prefixed[:1] or difflib.get_close_matches(name, sorted(top), n=1, cutoff=0.6)
        if not guess:
            leaves = {n.split(".", 1)[1]: n for n in nested}
            close = difflib.get_close_matches(name, sorted(leaves), n=1, cutoff=0.75)
            guess = [leaves[close[0]]] if close else []
        hint = f"did you mean {guess[0]}=...? " if guess else ""
        return f"unknown option {name!r} in {arg!r}; {hint}(the options: configs/{config_name}.yaml)"
    return None


def exit_on_unknown_option(config_dir: Path, config_name: str, prog: str) -> None:
    """Check ``sys.argv``; on an unknown option print ``<prog>: error: ...`` and exit with status 2."""
    message = unknown_option(sys.argv[1:], config_dir, config_name)
    if message is not None:
        print(f"{prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)
