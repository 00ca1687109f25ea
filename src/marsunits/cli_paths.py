"""Path options on a ``train.py`` or ``predict.py`` command line, before Hydra reads them: ``~`` in the
folders Hydra makes read as the home folder (:func:`home_expanded_overrides`), a value Hydra's grammar cannot
read unquoted handed to it quoted, as typed (:func:`quoted_path_overrides`), a list of values taken as one
path outside a multirun said in a warning (:func:`sweeps_taken_as_one_value`), and a ``${`` that does not
resolve refused with the escape that works (:func:`unresolvable_path_interpolation`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from marsunits.cli_argv import hydra_quoted, is_multirun, override_arguments
from marsunits.errors import readable

__all__ = [
    "home_expanded_overrides",
    "quoted_path_overrides",
    "sweeps_taken_as_one_value",
    "unresolvable_path_interpolation",
    "warn_sweeps_taken_as_one_value",
]


def _path_like(key: str) -> bool:
    """Whether the option ``key`` holds a file or folder path or a folder's name (``input_dir``,
    ``data.root``, ``paths.*``, ``run_name``, ``task_name``, ``hydra.run.dir``, ``hydra.sweep.dir``; an
    Optuna study's database URL, ``hydra.sweeper.storage=sqlite:///~/studies/optuna.db``, which names a
    file): ``run_name=Séítah`` (or Latin-1 bytes) was refused with a lexer error though it only names a
    folder."""
    key = key.lstrip("+")
    return (
        key.startswith("paths.")
        or key.endswith(("_dir", ".dir", "_path", "root"))
        or key in ("run_name", "task_name", "hydra.sweeper.storage")
    )


#: Options naming folders that Hydra makes itself, before any code of the project reads the value.
_HYDRA_MADE_FOLDERS = ("paths.log_dir", "paths.root_dir", "hydra.run.dir", "hydra.sweep.dir")


def home_expanded_overrides(argv: Sequence[str]) -> list[str]:
    """``argv`` with a leading ``~`` of the folders Hydra makes (``paths.log_dir=~/runs``, ``paths.root_dir``,
    ``hydra.run.dir``, ``hydra.sweep.dir``) read as the home folder
    (:func:`~marsunits.user_paths.expand_home`: ``~name`` naming no user stays as it is).

    zsh (macOS's shell) passes ``~`` after ``=`` to the program as it is, and Hydra made a folder named
    ``~`` in the current one and put the run there; the other path options are read by the project's code,
    which expands ``~`` itself. A quoted value and everything else are left as they are.
    """
    from marsunits.user_paths import expand_home

    out = []
    for arg in argv:
        key, sep, raw = arg.partition("=")
        if sep and key.lstrip("+") in _HYDRA_MADE_FOLDERS and raw.startswith("~"):
            arg = f"{key}={expand_home(raw)}"
        out.append(arg)
    return out


def quoted_path_overrides(argv: Sequence[str]) -> list[str]:
    """``argv`` with the values of path options quoted for Hydra where Hydra could not read them as written.

    Hydra's override grammar reads an unquoted value as ASCII words: ``input_dir=/data/Séítah`` (a name
    this project's users write: Máaz, Séítah), ``Mars (copy)``, ``Sol 12 [Navcam]`` or ``a=b`` were refused
    with a lexer error, and ``sol 12, left`` read as a sweep. A path option's value that does not parse, or
    that parses as a sweep outside a multirun, cannot be meant as Hydra syntax: it is given to Hydra as a
    quoted string (:func:`~marsunits.cli_argv.hydra_quoted`), exactly as typed. Everything else is left as
    it is.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    sweeping = is_multirun(argv)
    out = []
    for arg in argv:
        key, sep, raw = arg.partition("=")
        if arg.startswith(("-", "~")) or not sep or not _path_like(key) or raw[:1] in ("'", '"'):
            out.append(arg)
            continue
        try:
            (override,) = parser.parse_overrides([arg])
            readable = sweeping or not override.is_sweep_override()
        except OverrideParseException:
            readable = False
        out.append(arg if readable else f"{key}={hydra_quoted(raw)}")
    return out


def sweeps_taken_as_one_value(argv: Sequence[str]) -> list[str]:
    """One warning for each path option of ``argv`` whose value Hydra reads as a sweep (``run_name=a,b``,
    ``data.root=range(3)``) in a command that is no multirun; ``[]`` otherwise.

    :func:`quoted_path_overrides` gives such a value to Hydra as one string, as typed (``sol 12, left`` is a
    folder name): without ``-m`` Hydra runs one job, and ``run_name=a,b`` trained one run, in a folder named
    ``a,b``, without a word, where the user had meant a run per value. A value that names an existing file or
    folder as typed (``~`` the home folder, relative to the current folder) is that path, and nothing is
    said. The ``-m`` command shown is quoted for the shell.
    """
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    if is_multirun(argv):
        return []
    parser = OverridesParser.create()
    said = []
    for arg in argv:
        key, sep, raw = arg.partition("=")
        if arg.startswith(("-", "~")) or not sep or not _path_like(key) or raw[:1] in ("'", '"'):
            continue
        try:
            (override,) = parser.parse_overrides([arg])
        except OverrideParseException:
            continue
        if not override.is_sweep_override():
            continue
        names_run = key.lstrip("+") in ("run_name", "task_name")
        if not names_run and _exists(raw):
            continue  # input_dir=sol 12, left: a folder of that name
        what = "run folder name" if names_run else "path"
        said.append(
            f"{arg} is taken as one {what}, {raw!r}, for one run: a list of values is a sweep only in a "
            f"multirun. For one run per value add -m (python <script>.py -m ... {shlex.quote(arg)})"
        )
    return said


def _exists(path: str) -> bool:
    """Whether ``path`` names a file or folder that is there (``~`` the home folder); False where it cannot
    be looked up (a name too long, an unreadable folder)."""
    from marsunits.user_paths import expand_home

    try:
        return expand_home(path).exists()
    except (OSError, ValueError):
        return False


def warn_sweeps_taken_as_one_value(argv: Sequence[str], prog: str) -> None:
    """Print :func:`sweeps_taken_as_one_value` on stderr, one ``<prog>: warning: ...`` line each."""
    for said in sweeps_taken_as_one_value(argv):
        print(readable(f"{prog}: warning: {said}".replace("<script>.py", prog)), file=sys.stderr)


def unresolvable_path_interpolation(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for a path option given on the command line whose ``${...}`` does not resolve, or None.

    ``${`` starts an OmegaConf interpolation (``${now:%Y-%m-%d}``, ``${paths.data_root}/x``: legitimate, and
    resolved as usual), so a folder whose name holds ``${`` (``input_dir=data/dollar${x}``) ended in
    OmegaConf's multi-line "Interpolation key 'x' not found" (with ``paths.log_dir``, Hydra's traceback).
    Only failures that a literal ``${`` causes are said here, in one line naming the option, with the
    escape OmegaConf reads as a literal (``\\${``): a key that does not exist, an unknown resolver, and text
    that is no interpolation (``${ a b }``). Others (an unset ``${oc.env:VAR}``, ``${hydra:...}``, known only
    once Hydra runs) and sweeps are left to Hydra.
    """
    from omegaconf.errors import GrammarParseError, InterpolationKeyError, UnsupportedInterpolationType

    if is_multirun(argv):
        return None
    overrides = override_arguments(argv)
    keys = [
        a.split("=", 1)[0].lstrip("+")
        for a in overrides
        if "=" in a and _path_like(a.split("=", 1)[0]) and "${" in a.split("=", 1)[1]
    ]
    if not keys:
        return None
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        try:
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
        except ConfigCompositionException as exc:  # a value OmegaConf cannot parse: ``${ a b }``
            bad = isinstance(exc.__cause__, GrammarParseError)
            failed = next((k for k in keys if bad and f"override {k}=" in str(exc).replace("+", "")), None)
            if failed is None:
                return None
            return _literal_dollar_brace(failed, overrides, str(exc.__cause__))
        except Exception:  # noqa: BLE001 - anything else is Hydra's to report
            return None
    for key in keys:
        try:
            OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
        except (InterpolationKeyError, UnsupportedInterpolationType, GrammarParseError) as exc:
            return _literal_dollar_brace(key, overrides, str(exc))
        except Exception:  # noqa: BLE001 - known only when Hydra runs (${hydra:...}), or Hydra's to say
            continue
    return None


def _literal_dollar_brace(key: str, overrides: Sequence[str], reason: str) -> str:
    """The one-line refusal of :func:`unresolvable_path_interpolation` for the option ``key``."""
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser

    arg = next(a for a in reversed(overrides) if a.split("=", 1)[0].lstrip("+") == key)
    try:  # the value as typed: quoted_path_overrides may have quoted it for Hydra
        (override,) = OverridesParser.create().parse_overrides([arg])
        value = str(override.value())
    except Exception:  # noqa: BLE001 - shown as it is
        value = arg.split("=", 1)[1]
    literal = re.sub(r"(?<!\\)\$\{", lambda _: "\\${", value)
    fixed = shlex.quote(f"{arg.split('=', 1)[0]}={literal}")
    return (
        f"{key}={value!r}: ${{ starts an OmegaConf interpolation, and this one does not resolve "
        f"({reason.splitlines()[0]}). For a literal ${{ in the path write \\${{, e.g. {fixed} (quoted for "
        "the shell as shown); otherwise correct the interpolation"
    )
