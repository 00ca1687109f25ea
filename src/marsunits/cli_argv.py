"""What a ``train.py`` or ``predict.py`` command line holds, as the checks before Hydra read it: its
overrides (:func:`override_arguments`), whether it is a multirun (:func:`is_multirun`), a value quoted for
Hydra's grammar (:func:`hydra_quoted`), where an override added to it goes (:func:`with_override`), and
Hydra's flags that choose another config (:data:`CONFIG_FLAGS`), print and run nothing
(:data:`INFORMATIONAL_FLAGS`, :data:`SHELL_COMPLETION_FLAGS`), or run another run's job
(:data:`OTHER_RUN_FLAGS`).

Used by :mod:`marsunits.cli_overrides` and the modules beside it (``cli_compose``, ``cli_paths``,
``cli_values``, ``cli_sweeps``, ``cli_run_folder``, ``cli_launch``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def is_multirun(argv: Sequence[str]) -> bool:
    """Whether the command is a Hydra multirun (``-m``, or a config that sets it, as ``hparams_search``);
    ``hydra.mode=RUN`` makes ``hparams_search`` one run (a trial of a study resumed alone)."""
    if any(a in ("-m", "--multirun") for a in argv):
        return True
    if any(a.lstrip("+").startswith("hydra.mode=RUN") for a in argv):
        return False
    return any(a.startswith(("hparams_search=", "hydra.mode=MULTIRUN", "+hydra.mode=MULTIRUN")) for a in argv)


def with_override(argv: list[str], override: str) -> list[str]:
    """``argv`` with ``override`` placed right after its last override: Hydra reads the overrides as one
    block, so one appended after a flag that follows them (``train.py seed=1,2 -m``) was refused as an
    unknown argument."""
    last = max(
        (i for i, a in enumerate(argv) if _is_override(a)),
        default=None,
    )
    if last is None:
        return [*argv, override]
    return [*argv[: last + 1], override, *argv[last + 1 :]]


def _is_override(arg: str) -> bool:
    """Whether a command-line argument is a Hydra override (``key=value``, ``+key=value``, ``~key``), not a
    flag such as ``--cfg`` or ``-m``."""
    return not arg.startswith("-") and ("=" in arg or arg.startswith("~"))


def override_arguments(argv: Sequence[str]) -> list[str]:
    """The Hydra overrides of ``argv`` (``key=value``, ``+key=value``, ``~key``), in the order given; flags
    such as ``-m`` or ``--cfg`` left out (:func:`_is_override`)."""
    return [a for a in argv if _is_override(a)]


def hydra_quoted(raw: str) -> str:
    """``raw`` as a single-quoted Hydra string: a quote is escaped with a backslash, and backslashes are
    doubled only before a quote or the closing quote (elsewhere Hydra keeps them as written)."""
    escaped = re.sub(r"(\\*)('|\Z)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), raw)
    return f"'{escaped}'"


#: Hydra flags that choose another primary config or config folder: the check here composes ``train``.
CONFIG_FLAGS = ("--config-name", "-cn", "--config-dir", "-cd", "--config-path", "-cp")


#: Flags that print something and run nothing (no run folder is made).
INFORMATIONAL_FLAGS = (
    "-h",
    "--help",
    "--hydra-help",
    "--version",  # printed Hydra's version after a run folder had been claimed and made
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--shell-completion",
    "-sc",
)


#: Hydra's shell-completion flag, whose arguments (``install=bash``, ``query=bash``) look like overrides.
SHELL_COMPLETION_FLAGS = ("--shell-completion", "-sc")


#: Flags that run a job in a folder the command line does not name: ``--experimental-rerun`` runs the
#: pickled config of an earlier run, in that run's folder.
OTHER_RUN_FLAGS = ("--experimental-rerun",)
