"""Catch a misspelt command-line option before Hydra does, and say which option was probably meant.

Hydra answers ``python predict.py inputdir=images/`` with "Could not override 'inputdir' ... To append to
your config use +inputdir=images/": a fix that silently adds an option nothing reads. This check runs first.
The top-level name of each ``key=value`` override (``inputdir``, ``max_epoch``) is checked against the
primary config's keys and the config groups (no composition: fast). A nested name (``trainer.max_epoch``)
is checked by composing the config with the command's overrides through Hydra's compose API, the way
``@hydra.main`` will (so an ``experiment=`` that changes the groups counts), and the suggestion is the
closest key of the node it names. An override that adds a key (``+model.foo=1``, ``++model.foo=1``) is
checked against the parameters of the class its node builds (``_target_``), since Hydra accepts the key and
the run then failed in the class's constructor. Deletions (``~key``), ``hydra.*`` keys, multirun sweeps and
Hydra's own flags (``--cfg job``) are not checked; any composition problem other than an unknown key is
left to Hydra, which reports it in its own words.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf, open_dict

from marsunits.errors import readable, some_of
from marsunits.slurm_world import in_batch_step, launched_by_slurm, runs_as_one_process, slurm_world_problem

__all__ = [
    "added_option_not_taken",
    "argument_the_run_gives",
    "exit_on_unknown_option",
    "home_expanded_overrides",
    "note_another_copy_of_the_package",
    "predict_refusal",
    "unresolvable_path_interpolation",
    "unknown_nested_option",
    "unknown_option",
    "unreadable_or_unknown_choice",
    "sweeps_taken_as_one_value",
    "warn_sweeps_taken_as_one_value",
]


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


def _closest(name: str, known: Sequence[str]) -> str | None:
    """A known name that starts the typed one (``tile`` in ``tile_size``), else one that ends in it after an
    underscore (``num_classes`` for ``classes``: the closest spelling was ``subclasses``, another option;
    of several, the most similar), else the most similar, or None."""
    prefixed = sorted((n for n in known if len(n) >= 3 and name.startswith(n)), key=len, reverse=True)
    suffixed = sorted(n for n in known if len(name) >= 3 and n.endswith(f"_{name}"))
    # Of several (model.channels: in_channels, decoder_channels), the closest spelling.
    suffixed = difflib.get_close_matches(name, suffixed, n=1, cutoff=0)
    guess = prefixed[:1] or suffixed or difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return guess[0] if guess else None


#: Hydra's message when an override names a key the composed config does not have.
_NOT_IN_CONFIG = re.compile(r"^Could not override '([^']+)'")


def _compose_error(config_dir: Path, config_name: str, overrides: list[str]) -> tuple[str, DictConfig | None]:
    """Compose; return ``("", config)`` on success, else ``(Hydra's message, None)``."""
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        try:
            return "", compose(config_name, overrides=overrides)
        except ConfigCompositionException as exc:
            return str(exc), None
        except Exception as exc:  # a parse or plugin problem: Hydra reports it when it runs
            return f"other: {exc}", None


def unknown_nested_option(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for a ``group.key=value`` override whose key the composed config lacks, or None.

    The config is composed with every checkable override of ``argv``; when Hydra refuses one because its key
    is missing, the config is composed again without it and the key's closest sibling is suggested
    (``trainer.max_epoch`` -> ``trainer.max_epochs``).
    """
    if any(a in ("-m", "--multirun") for a in argv):
        return None  # sweeps compose one job at a time: Hydra checks each
    overrides = [a for a in argv if "=" in a and not a.startswith(("-", "hydra.", "hydra/"))]
    if not any("." in a.split("=", 1)[0] and not a.startswith(("+", "~")) for a in overrides):
        return None
    message, _ = _compose_error(config_dir, config_name, overrides)
    match = _NOT_IN_CONFIG.match(message)
    if match is None:
        return None
    key = match.group(1)
    arg = next((a for a in overrides if a.split("=", 1)[0] == key), f"{key}=...")
    rest = [a for a in overrides if a != arg]
    _, cfg = _compose_error(config_dir, config_name, rest)
    hint = ""
    if cfg is not None:
        node: object = cfg
        parts = key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, DictConfig):
                break
            if part not in node:
                target = node._get_node("_target_")._value() if "_target_" in node else None  # type: ignore[union-attr]
                taken = _target_parameters(str(target)) if target and depth == len(parts) - 1 else None
                if taken is not None and part in taken:
                    # A keyword of the class the node builds that the config leaves to its default
                    # (trainer.max_steps): Hydra adds it with a plus; a similar name is another option.
                    return (
                        f"unknown option {key!r} in {arg!r}: the config does not list it, but "
                        f"{'.'.join(parts[:depth])} builds {str(target).rsplit('.', 1)[-1]}, which takes "
                        f"{part!r}: add it with a plus, +{arg.lstrip('+')}"
                    )
                guess = _closest(part, [str(k) for k in node if not str(k).startswith("_")])
                if guess is not None:
                    hint = f"; did you mean {'.'.join([*parts[:depth], guess])}=...?"
                break
            node = node._get_node(part)  # no interpolation resolved
    return (
        f"unknown option {key!r} in {arg!r}{hint} "
        f"(every option: python {config_name}.py --cfg job, with the same overrides)"
    )


def _target_parameters(target: str) -> set[str] | None:
    """The keyword parameters of the class or function ``target`` (a ``_target_``), or None when it takes
    any keyword (``**kwargs``) or cannot be imported here (imported quietly: Hydra's ``get_object`` logged
    its error line on the console before the command's own refusal of the target)."""
    from marsunits.targets import UnimportableTargetError, locate

    try:
        parameters = inspect.signature(locate(target)).parameters.values()
    except (UnimportableTargetError, TypeError, ValueError):  # refused later (run_checks.check_config_values)
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL}


def added_option_not_taken(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for a ``+node.key=value`` (or ``++``) override that adds a key the class built from
    ``node`` does not take (``+model.foo=1``: ``SegmentationTask`` has no ``foo``; ``+trainer.foo.bar=1``:
    the ``Trainer`` would be handed a dict ``foo``), or None.

    Hydra adds such a key without a word, and the run failed when the node was instantiated, after the run
    folder was made, with Hydra's multi-line ``unexpected keyword argument`` error and status 1. A node
    whose class takes any keyword (W&B's logger: ``+logger.wandb.notes=...``), a key the node already has,
    and a class that cannot be imported here are left alone.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [a for a in argv if "=" in a and not a.lstrip("+").startswith(("-", "hydra.", "hydra/"))]
    added = [a for a in overrides if a.startswith("+") and "." in a.split("=", 1)[0]]
    if not added:
        return None
    try:  # a sweep's values do not compose as one job: its other settings are enough here
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # noqa: BLE001 - Hydra reports an override it cannot read
        return None
    single = [a for a, o in zip(overrides, parsed, strict=True) if not o.is_sweep_override()]
    for arg in added:
        key = arg.split("=", 1)[0].lstrip("+")
        _, cfg = _compose_error(config_dir, config_name, [a for a in single if a != arg])
        if cfg is None:
            return None
        # The first part of the key the config lacks, under the deepest node it has: in
        # ``+trainer.foo.bar=1`` that is ``foo`` under ``trainer`` (Hydra hands the Trainer a dict ``foo``).
        parts = key.split(".")
        depth = 1
        while depth < len(parts) - 1 and isinstance(
            OmegaConf.select(cfg, ".".join(parts[: depth + 1]), throw_on_resolution_failure=False), DictConfig
        ):
            depth += 1
        parent, leaf = ".".join(parts[:depth]), parts[depth]
        if leaf.startswith("_"):
            continue  # Hydra's own keys (_target_, _convert_, ...)
        node = OmegaConf.select(cfg, parent, default=None, throw_on_resolution_failure=False)
        if not isinstance(node, DictConfig) or "_target_" not in node or leaf in node:
            continue
        target = str(node._get_node("_target_")._value())  # type: ignore[union-attr]
        taken = _target_parameters(target)
        if taken is None or leaf in taken:
            continue
        guess = _closest(leaf, sorted({*taken, *(str(k) for k in node if not str(k).startswith("_"))}))
        hint = f"; did you mean {parent}.{guess}=...?" if guess else ""
        return (
            f"unknown option {f'{parent}.{leaf}'!r} in {arg!r}: {parent} builds {target.rsplit('.', 1)[-1]}, "
            "which takes no "
            f"{leaf!r}{hint} (every option: python {config_name}.py --cfg job, with the same overrides)"
        )
    return None


def _sweeping(argv: Sequence[str]) -> bool:
    """Whether the command is a Hydra multirun (``-m``, or a config that sets it, as ``hparams_search``);
    ``hydra.mode=RUN`` makes ``hparams_search`` one run (a trial of a study resumed alone)."""
    if any(a in ("-m", "--multirun") for a in argv):
        return True
    if any(a.lstrip("+").startswith("hydra.mode=RUN") for a in argv):
        return False
    return any(a.startswith(("hparams_search=", "hydra.mode=MULTIRUN", "+hydra.mode=MULTIRUN")) for a in argv)


def _with_override(argv: list[str], override: str) -> list[str]:
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
    quoted string (:func:`_hydra_quoted`), exactly as typed. Everything else is left as it is.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    sweeping = _sweeping(argv)
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
        out.append(arg if readable else f"{key}={_hydra_quoted(raw)}")
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

    if _sweeping(argv):
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

    if _sweeping(argv):
        return None
    overrides = _overrides(argv)
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


def _is_override(arg: str) -> bool:
    """Whether a command-line argument is a Hydra override (``key=value``, ``+key=value``, ``~key``), not a
    flag such as ``--cfg`` or ``-m``."""
    return not arg.startswith("-") and ("=" in arg or arg.startswith("~"))


def _overrides(argv: Sequence[str]) -> list[str]:
    """The Hydra overrides of ``argv``, in order (:func:`_is_override`)."""
    return [a for a in argv if _is_override(a)]


def _hydra_quoted(raw: str) -> str:
    """``raw`` as a single-quoted Hydra string: a quote is escaped with a backslash, and backslashes are
    doubled only before a quote or the closing quote (elsewhere Hydra keeps them as written)."""
    escaped = re.sub(r"(\\*)('|\Z)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), raw)
    return f"'{escaped}'"


def unreadable_or_unknown_choice(argv: Sequence[str], config_dir: Path) -> str | None:
    """The message for the first override Hydra cannot parse, or that picks a config group option that does
    not exist (``experiment=marscapes``), or None.

    Hydra reports both in several lines with exit status 1 (a parse error only says "no viable alternative at
    input"); here they get one line naming the override, the closest option and the choices.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            (override,) = parser.parse_overrides([arg])
        except OverrideParseException as exc:
            reason = str(exc).splitlines()[0]
            return (
                f"cannot read the override {arg!r} ({reason}): close every bracket, brace and quote, and put "
                "an override with spaces in single quotes, e.g. 'labels_class_map={0: 0, 1: 1, 255: 255}'"
            )
        group = override.key_or_group.split("@", 1)[0]
        folder = config_dir / group
        if override.is_delete() or group.split("/", 1)[0] == "hydra" or not folder.is_dir():
            continue
        value = override.value()
        chosen = (
            value.list if isinstance(value, ChoiceSweep) else value if isinstance(value, list) else [value]
        )
        for option in chosen:
            if not isinstance(option, str) or (folder / f"{option}.yaml").is_file():
                continue
            choices = sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml"))
            guess = _closest(option, choices)
            meant = f"{group}={guess}" if len(chosen) == 1 else repr(guess)
            hint = f"; did you mean {meant}?" if guess else ""
            return f"no {group} config {option!r} in {arg!r}{hint} (the choices: {', '.join(choices)})"
    return None


def unknown_option(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for the first override whose name the config does not have, or None.

    Top-level names first (:func:`unknown_nested_option` then checks nested ones). The suggestion is the
    closest top-level name, else the closest key of a group's default option
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
    problem = unreadable_or_unknown_choice(argv, config_dir)
    if problem is not None:
        return problem
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
        guess = _closest(name, sorted(top))
        if guess is None:
            leaves = {n.split(".", 1)[1]: n for n in nested}
            close = difflib.get_close_matches(name, sorted(leaves), n=1, cutoff=0.75)
            guess = leaves[close[0]] if close else None
        hint = f"; did you mean {guess}=...?" if guess else ""
        return f"unknown option {name!r} in {arg!r}{hint} (the options: configs/{config_name}.yaml)"
    return (
        argument_the_run_gives(argv, config_name)
        or unknown_nested_option(argv, config_dir, config_name)
        or added_option_not_taken(argv, config_dir, config_name)
    )


#: ``train.py``'s Trainer arguments that the run gives itself (:func:`~marsunits.training.build_trainer`), and
#: the config group that sets them.
_GIVEN_BY_RUN = {
    "trainer.logger": "the loggers of the logger group (configs/logger/): choose them with logger=<name>, "
    "logger=none for none",
    "trainer.callbacks": "the callbacks of the callbacks group (configs/callbacks/): choose them with "
    "callbacks=[default,...], or set one's option with callbacks.<name>.<key>=...",
}


def argument_the_run_gives(argv: Sequence[str], config_name: str) -> str | None:
    """The message for a ``trainer.logger`` or ``trainer.callbacks`` override (``+`` or not), or None.

    ``train.py`` hands the Trainer its loggers and callbacks from their groups, over any such key: told to
    add ``+trainer.logger=false`` (a Trainer argument the config does not list), Hydra took it and the run
    logged as before, without a word. The message names the group option that does it.
    """
    if config_name != "train":
        return None
    for arg in argv:
        key = arg.split("=", 1)[0].lstrip("+")
        if "=" in arg and not arg.startswith("-") and key in _GIVEN_BY_RUN:
            return f"{key} in {arg!r} is not read: train.py gives the Trainer {_GIVEN_BY_RUN[key]}"
    return None


def unnamed_external_ranks(argv: Sequence[str], config_dir: Path) -> str | None:
    """The refusal of a training process started as one of several by torchrun or SLURM (``WORLD_SIZE``, or
    ``SLURM_NTASKS`` with ``SLURM_PROCID``), or on one of ``trainer.num_nodes`` > 1 machines launched by hand
    (``NODE_RANK`` or ``GROUP_RANK`` without ``WORLD_SIZE``, and no SLURM ranks that Lightning would read
    instead), whose run folder is named after the clock (the
    default ``run_name``); None otherwise.

    Each such process composes its config itself: a rank that started a second after rank 0 made a run
    folder of its own (its ``.hydra/`` record and ``train.log``), while checkpoints and metrics went to
    rank 0's. Lightning's own launcher is not concerned: its ranks get rank 0's ``hydra.run.dir``. Nor is an
    ``sbatch`` script's own process (``srun`` forgotten, :func:`~marsunits.slurm_world.in_batch_step`): it is
    one process whatever ``SLURM_NTASKS`` says, and a trainer of several is refused at train time, naming
    ``srun`` (asking it for a run_name first sent the user to fix the wrong thing).
    """
    world = os.environ.get("WORLD_SIZE", "")
    if not world and "SLURM_PROCID" in os.environ and not in_batch_step():
        world = os.environ.get("SLURM_NTASKS", "")
    # A multi-node run launched by hand, as Lightning documents it (the same command on each machine with
    # MASTER_ADDR and NODE_RANK), sets no WORLD_SIZE: each machine still composes its own run folder. Where
    # Lightning takes the ranks from SLURM, NODE_RANK is not what places this process (an sbatch script that
    # exports NODE_RANK=$SLURM_NODEID): the batch script's own process is refused at train time, naming srun.
    node_rank = os.environ.get("NODE_RANK", "").strip() or os.environ.get("GROUP_RANK", "").strip()
    by_hand = not world.strip() and bool(node_rank) and not launched_by_slurm(os.environ)
    if _sweeping(argv) or not (by_hand or (world.strip().isdigit() and int(world) >= 2)):
        return None
    keys = [a.split("=", 1)[0].lstrip("+") for a in argv if "=" in a]
    if any(k in ("run_name", "hydra.run.dir", "paths.output_dir") for k in keys):
        return None
    overrides = _overrides(argv)
    try:
        with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
            raw = OmegaConf.to_container(compose("train", overrides=overrides), resolve=False)
    except Exception:  # noqa: BLE001 - a config that does not compose is Hydra's to report
        return None
    if "now:" not in str(raw.get("run_name")):  # type: ignore[union-attr]
        return None  # a fixed name from the config: every rank composes the same folder
    trainer = raw.get("trainer") if isinstance(raw, dict) else None
    if by_hand:
        num_nodes = trainer.get("num_nodes", 1) if isinstance(trainer, dict) else 1
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 2:
            return None  # one machine: Lightning's own processes get rank 0's folder
        return (
            f"this is machine NODE_RANK={node_rank} of a run of trainer.num_nodes={num_nodes} started by "
            "hand, and its run folder is named after the clock (run_name's default): each machine composes "
            "its own, so the machines' records and logs land in different folders. Add run_name=<name>, the "
            "same on every machine"
        )
    if not os.environ.get("WORLD_SIZE", "") and isinstance(trainer, dict) and runs_as_one_process(trainer):
        # SLURM's counts, but a trainer Lightning runs as one process (python train.py in an sbatch script
        # with --ntasks=4 for the loaders' CPUs): no other rank makes a folder. A second task of such a
        # job (srun -n 4, inside salloc too) is said as what it is, not as a missing run_name.
        return slurm_world_problem(trainer)
    return (
        f"this is one of {int(world)} training processes started by torchrun or SLURM, and its run folder "
        "is named after the clock (run_name's default): each process composes its own, and one that starts "
        "a second later writes to a folder of its own. Add run_name=<name>, the same for every process "
        "(e.g. run_name=ddp-$SLURM_JOB_ID)"
    )


def note_another_copy_of_the_package(checkout: Path, prog: str) -> str | None:
    """Say on stderr, in one line, that ``prog`` runs a copy of the package other than its checkout's
    ``src/marsunits``, and return that line (None, and nothing said, where it runs the checkout's own or the
    checkout has no ``src/marsunits``, or in a process that is not the run's global rank 0: said once a run,
    not once a DDP rank).

    train.py and predict.py import ``marsunits`` from wherever Python finds it. After a non-editable
    ``pip install .`` (or an editable install of another clone) that is a copy of the code taken at install
    time: a change under the checkout's src/ did nothing, and the configs of the checkout could name options
    the copy does not know, without a word about why. The run goes on: the copy may be the one meant.

    Args:
        checkout: The folder of the entry point (the repository root).
        prog: The entry point's name, for the message.
    """
    import marsunits
    from marsunits.run_folder_claim import is_global_rank_zero

    own = checkout / "src" / "marsunits"
    running = Path(marsunits.__file__).resolve().parent
    if not (own / "__init__.py").is_file() or running == own.resolve():
        return None
    if not is_global_rank_zero():  # a DDP/torchrun rank started again: the run's rank 0 has said it
        return None
    line = readable(
        f"{prog}: note: running the marsunits package at {running}, not this checkout's {own}: changes "
        f"under {own} are not used until it is installed again; `pip install -e {checkout}` installs the "
        "checkout itself, so they take effect at once"
    )
    print(line, file=sys.stderr)
    return line


def exit_on_unknown_option(config_dir: Path, config_name: str, prog: str) -> None:
    """Check ``sys.argv``; on an unknown option, a log folder that cannot be made, a value ``predict.py``
    refuses (:func:`predict_refusal`), or a process of a torchrun/SLURM launch without a shared
    ``run_name`` (:func:`unnamed_external_ranks`), print ``<prog>: error: ...`` and exit with status 2.

    Hydra's shell completion (``-sc install=bash``, ``-sc query=bash``) is left alone: its ``install=`` and
    ``query=`` are the flag's arguments, not options, and were refused as unknown ones."""
    if any(a in _SHELL_COMPLETION for a in sys.argv[1:]):
        return
    message = (
        unknown_option(sys.argv[1:], config_dir, config_name)
        or unresolvable_path_interpolation(sys.argv[1:], config_dir, config_name)
        or unwritable_log_dir(sys.argv[1:])
    )
    if message is None and config_name == "predict":
        message = predict_refusal(sys.argv[1:], config_dir)
    if message is None and config_name == "train":
        message = unnamed_external_ranks(sys.argv[1:], config_dir)
    if message is None and config_name == "train":
        message, sys.argv[1:] = claim_run_folder(sys.argv[1:], config_dir)
    if message is not None:  # a folder named in Latin-1 bytes as \xNN, as the run's own errors say it
        print(readable(f"{prog}: error: {message}"), file=sys.stderr)
        raise SystemExit(2)


def predict_refusal(argv: Sequence[str], config_dir: Path) -> str | None:
    """``predict.py``'s refusal of its options, by the checks that need neither the model nor the images
    (:func:`~marsunits.inference.runner.check_before_predicting`: required options, values, folders, device,
    that the checkpoint is there), or None.

    Run before Hydra starts: a mistyped value (``batch_size=eight``, ``device=gpu``) was refused only inside
    the run, after Hydra had made ``logs/predict/<time>/`` with its ``.hydra/`` record, a log folder of a
    run that never started. ``--help``-like flags, sweeps, another primary config and anything that does
    not compose or resolve here (Hydra's runtime values) are left to the run, which checks the same.
    """
    from marsunits.errors import MarsUnitsError
    from marsunits.inference.options import PredictOptions
    from marsunits.inference.runner import check_before_predicting, configured_log_dir

    keys = [a.split("=", 1)[0].lstrip("+") for a in argv]
    if any(k in (*_INFORMATIONAL, *_OTHER_RUN) or k.startswith(_CONFIG_FLAGS) for k in keys) or _sweeping(
        argv
    ):
        return None
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        try:
            cfg = compose("predict", overrides=_overrides(argv))
        except Exception:  # noqa: BLE001 - Hydra reports what does not compose
            return None
    try:
        check_before_predicting(PredictOptions.from_config(cfg), configured_log_dir(cfg))
    except (MarsUnitsError, FileNotFoundError) as refused:
        return str(refused)
    except Exception:  # noqa: BLE001 - not resolvable before Hydra starts (${hydra:...}): the run checks it
        return None
    return None


def claim_run_folder(argv: Sequence[str], config_dir: Path) -> tuple[str | None, list[str]]:
    """Take ``train.py``'s claim on its run folder before Hydra starts; returns the refusal when another live
    run holds it (else None) and ``argv`` with the run's name pinned.

    ``training.run`` claims the folder too, but only once Hydra has written its ``.hydra/`` record and
    opened ``train.log`` there: a command given the folder of a run already training (its ``run_name``, or
    the same command in the same second: a job array with ``seed=1``, ``seed=2``, ...) wrote its config over
    that run's ``.hydra/config.yaml`` before it was refused. The folder is found by composing the config as
    Hydra will (``hydra.run.dir``); the claim is held for the rest of the process
    (:func:`~marsunits.run_folder_claim.hold_run_folder_for_process`). A ``run_name`` made from the time
    (``${now:...}``, the default) is added to the command line as composed here, so Hydra's folder is the
    one claimed even when the clock passes a second meanwhile. A sweep's trials are checked together
    (:func:`sweep_refusal`) and it claims its sweep folder instead (:func:`claim_sweep_folder`); where the
    run folder is left to the run (a clock-made ``run_name``, another primary config, ``paths.output_dir``)
    only the values are checked (:func:`value_refusal`). ``--help``-like flags and the other DDP ranks
    (their rank 0 holds the folder) are left alone; a config that does not compose is Hydra's to report.
    """
    from marsunits.run_folder_claim import (
        hold_run_folder_for_process,
        is_global_rank_zero,
        run_folder_holder,
    )

    argv = list(argv)
    if any(a.split("=", 1)[0] in (*_INFORMATIONAL, *_OTHER_RUN) for a in argv):
        return None, argv
    if not is_global_rank_zero():  # a DDP rank that Lightning started again: its rank 0 holds the folder
        return None, argv
    if _sweeping(argv):
        refused = sweep_refusal(argv, config_dir)
        if refused is not None:
            return refused, argv
        return claim_sweep_folder(argv, config_dir)
    keys = [a.split("=", 1)[0].lstrip("+") for a in argv]
    if any(k in _CONFIG_FLAGS or k.startswith(_CONFIG_FLAGS) for k in keys) or "paths.output_dir" in keys:
        # Another primary config, or a run folder that is not Hydra's: the folder is the run's to check, the
        # values are checked here all the same (a mistyped one left a folder of a run that never started).
        return value_refusal(argv, config_dir), argv
    # A folder named by the clock or by Hydra's job through a value given here: Hydra's may differ (a second
    # later; ${hydra.job.name} composes to another name here): the folder is left to the run, the values
    # are checked here.
    if any(
        "now:" in a.split("=", 1)[1] or "${hydra" in a.split("=", 1)[1]
        for a in argv
        if "=" in a and a.split("=", 1)[0].lstrip("+") in _FOLDER_KEYS
    ):
        return value_refusal(argv, config_dir), argv
    named = any(k in ("run_name", "hydra.run.dir") for k in keys)
    # Deletions (~key) too: without them the job composed here was not the run's, and a resume was refused.
    overrides = _overrides(argv)
    pin = None
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        try:
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
            raw = OmegaConf.to_container(cfg, resolve=False)
            if not named and "now:" in str(raw.get("run_name")):  # type: ignore[union-attr]
                pin = str(cfg.run_name)  # the default, made from the clock: pinned as composed now
                overrides.append(f"run_name={_hydra_quoted(pin)}")
                cfg = compose("train", overrides=overrides, return_hydra_config=True)
            run = OmegaConf.to_container(cfg.hydra.run, resolve=False)
            raw_dir = str(run.get("dir")) if isinstance(run, dict) else "now:"
            folder = Path(str(cfg.hydra.run.dir))
        except Exception:  # noqa: BLE001 - anything unresolvable here is Hydra's to report when it runs
            return None, argv
    if "now:" in raw_dir or "${hydra" in raw_dir:  # see above
        return value_refusal(argv, config_dir), argv
    folder = folder if folder.is_absolute() else Path.cwd() / folder
    held = run_folder_holder(folder)
    if held is not None:
        return held, argv
    # A refusal of the run in that folder (it holds a finished run; a resume with other settings) also
    # comes before Hydra rewrites the folder's .hydra/ record with this command's settings.
    from marsunits.run_checks import PINNED_RUN_NAME_ENV, refusal_before_hydra

    if pin is not None:
        os.environ[PINNED_RUN_NAME_ENV] = pin  # still the default run name (run_checks._named_run)
    refused = refusal_before_hydra(cfg, folder)
    if refused is not None:
        return refused, argv
    if pin is not None:
        argv = _with_override(argv, f"run_name={_hydra_quoted(pin)}")
    try:
        return hold_run_folder_for_process(folder), argv
    except OSError:  # the folder cannot be made: Hydra says so
        return None, argv


def primary_config(argv: Sequence[str], config_dir: Path) -> tuple[Path, str, list[str]] | None:
    """The config folder, primary config and added overrides with which ``train.py`` composes ``argv``:
    ``config_dir`` and ``train``, or those Hydra's ``--config-name``/``-cn`` and ``--config-path``/``-cp``
    choose (a relative path is read from the folder of train.py, ``config_dir``'s parent, as Hydra does);
    a ``--config-dir``/``-cd`` folder, which Hydra adds to its search path after the primary folder, is
    added as ``hydra.searchpath`` (the same place). None where that would replace a search path the
    command or the primary config sets itself: not composed here."""
    from marsunits.user_paths import expand_home

    folder, name, added = config_dir, "train", None
    args = list(argv)
    for i, arg in enumerate(args):
        for flags in (("-cn", "--config-name"), ("-cp", "--config-path"), ("-cd", "--config-dir")):
            value = next((arg.split("=", 1)[1] for f in flags if arg.startswith(f"{f}=")), None)
            if arg in flags and i + 1 < len(args):
                value = args[i + 1]
            if value is None:
                continue
            if flags[0] == "-cn":
                name = value.removesuffix(".yaml")
            elif flags[0] == "-cp":
                given = expand_home(value)
                folder = given if given.is_absolute() else config_dir.parent / given
            else:
                added = expand_home(value).resolve()
    if added is None:
        return folder, name, []
    if any(a.lstrip("+").startswith("hydra.searchpath") for a in args):
        return None
    try:
        own = OmegaConf.select(OmegaConf.load(folder / f"{name}.yaml"), "hydra.searchpath", default=None)
    except Exception:  # noqa: BLE001 - a primary config that is not in that folder: Hydra finds it
        return None
    if own is not None:
        return None
    return folder, name, [f"hydra.searchpath=[{_hydra_quoted(added.as_uri())}]"]


def _composed(argv: Sequence[str], config_dir: Path, overrides: Sequence[str]) -> DictConfig | None:
    """The config ``train.py`` composes for ``argv`` (:func:`primary_config`) with ``overrides``, Hydra's
    node included; None where it does not compose here (Hydra reports that when it runs)."""
    primary = primary_config(argv, config_dir)
    if primary is None:
        return None
    folder, name, added = primary
    try:
        with initialize_config_dir(config_dir=str(folder.resolve()), version_base="1.3"):
            return compose(name, overrides=[*added, *overrides], return_hydra_config=True)
    except Exception:  # noqa: BLE001 - anything that does not compose here is Hydra's to report
        return None


def _run_folder_guess(cfg: DictConfig) -> Path:
    """The run folder of ``cfg`` as composed now (``hydra.run.dir``: the clock may have moved when Hydra makes
    it), or the log folder where it does not resolve here; only checks that read no folder are given it."""
    try:
        folder = Path(str(cfg.hydra.run.dir))
    except Exception:  # noqa: BLE001 - made of Hydra's runtime values
        folder = Path("logs")
    return folder if folder.is_absolute() else Path.cwd() / folder


def value_refusal(argv: Sequence[str], config_dir: Path) -> str | None:
    """The refusal of a value of ``train.py``'s command line that needs no run folder
    (:func:`~marsunits.run_checks.config_value_refusal`), or None: for a command whose run folder is not
    claimed here (a ``run_name`` made of the clock, ``--config-name``, ``paths.output_dir``), whose mistyped
    value was refused only inside the run, after Hydra had made the folder."""
    from marsunits.run_checks import config_value_refusal

    cfg = _composed(argv, config_dir, _overrides(argv))
    return None if cfg is None else config_value_refusal(cfg, _run_folder_guess(cfg))


#: The most trials of a sweep whose configs are all composed and checked before it starts (one composition
#: each, about 0.15 s, only while they are refused: the first trial that passes ends the check, so a sweep
#: that runs costs two, its first trial's and the sweep's own, which names its sweeper and
#: ``hydra.sweeper.params``; about 0.2 s more before a grid starts, 0.4 s before a study). A larger sweep
#: is checked on a sample (:func:`_checked_trials`), which can show a refusal that no swept value changes
#: but not that every trial is refused each its own way.
MAX_CHECKED_TRIALS = 32


def sweep_refusal(argv: Sequence[str], config_dir: Path) -> str | None:
    """The refusal that every trial of a sweep (``train.py -m``, Hydra's basic sweeper; or an Optuna study,
    ``hparams_search=optuna``) meets, in one line, or None (a sweep some trial of which passes, another
    sweeper, or one that does not compose here: Hydra reports that).

    The trials' configs (the command's overrides with one value of each swept one, as the sweeper lists
    them) are checked as a single run's is before its folder is made
    (:func:`~marsunits.run_checks.config_value_refusal`). A mistake the trials shared
    (``-m model.lr=1e-3,2e-3 data.crop_size=100``) made one trial folder per trial, each with Hydra's record
    and the same error, before the sweep ended (an Optuna study: three, :mod:`marsunits.sweep_trials`).

    Every trial of a grid of up to :data:`MAX_CHECKED_TRIALS` is composed, and the grid is refused when each
    is. An Optuna study's trials cannot be listed: each choice of its search space is checked and each
    interval at both ends; a larger grid, with each swept value of one option at a time. Those are refused
    only when the refusal is the same in every trial checked, whatever the swept values: a mistake in what
    the trials share. A refusal that changes with a swept value (``data.crop_size=choice(100,101)``) is
    left to the trials, as the values the study or grid explores.
    """
    from marsunits.run_checks import config_value_refusal

    primary = primary_config(argv, config_dir)
    if primary is None:
        return None
    folder, name, added = primary
    overrides = _overrides(argv)
    refusals: list[str] = []
    try:
        with initialize_config_dir(config_dir=str(folder.resolve()), version_base="1.3"):
            listed = _sweep_dimensions(name, added, overrides)
            if listed is None:
                return None
            dims, complete = listed
            trials, every = _checked_trials(dims)
            every = every and complete
            for num, trial in enumerate(trials):
                cfg = compose(name, overrides=[*added, *trial], return_hydra_config=True)
                with _as_sweep_job(cfg, num):
                    refused = config_value_refusal(cfg, _run_folder_guess(cfg))
                if refused is None:
                    return None  # this trial may run: the failing ones are said by the sweep
                refusals.append(refused)
                if not every and len(set(refusals)) > 1:
                    return None  # refused each its own way, in a sample: other trials may pass
    except Exception:  # noqa: BLE001 - Hydra reports an override it cannot read or sweep, a config it cannot compose
        return None
    if not refusals:
        return None  # no trial (a glob that matches no option): Hydra's sweeper runs none
    swept = [d[0].split("=", 1)[0] for d in dims if len(d) > 1]
    if len(set(refusals)) == 1:
        if every:
            return f"{refusals[0]} (in every trial of this sweep: none was started)"
        return (
            f"{refusals[0]} (the same in each trial checked, whatever the values of {', '.join(swept)}: a "
            "value every trial of this sweep shares; none was started)"
        )
    first = " ".join(a for a in trials[0] if a.split("=", 1)[0] in swept)
    return f"every trial of this sweep is refused (none was started); the first ({first}): {refusals[0]}"


def _sweep_dimensions(
    name: str, added: list[str], overrides: list[str]
) -> tuple[list[list[str]], bool] | None:
    """The overrides of a sweep's trials, one list per option: its values (``key=value``), one for an option
    every trial shares; a trial takes one value of each; and whether those are all the values (False for an
    Optuna study's interval, listed by its two ends). None for a sweeper other than Hydra's basic one and
    the Optuna plugin, or a study whose trials take values listed nowhere here (``custom_search_space``, the
    older ``search_space``).

    Listed as the sweepers list them (``BasicSweeper.split_arguments``; the plugin's
    ``create_params_from_overrides``), with ``hydra.sweeper.params`` first, within Hydra's initialised
    config folder: a glob over a config group's options (``experiment=glob(synth*)``) is listed by Hydra's
    config loader, from every folder of the search path (a ``--config-dir`` folder included).
    """
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lister = _GroupOptions(GlobalHydra.instance().config_loader(), added)
    parser = OverridesParser.create(config_loader=lister)  # type: ignore[arg-type]
    parsed = parser.parse_overrides(overrides)
    fixed = [a for a, o in zip(overrides, parsed, strict=True) if not o.is_sweep_override()]
    master = compose(name, overrides=[*added, *fixed], return_hydra_config=True)  # as Hydra composes it
    sweeper = master.hydra.sweeper
    target = str(sweeper.get("_target_", ""))
    params = [f"{k!s}={v}" for k, v in (sweeper.get("params") or {}).items()]
    if target.endswith(".BasicSweeper"):
        lists: dict[str, list[str]] = {}
        for override in parser.parse_overrides([*params, *overrides]):
            key = override.get_key_element()
            if override.is_sweep_override():
                lists[key] = [f"{key}={v}" for v in override.sweep_string_iterator()]
            else:
                lists[key] = [f"{key}={override.get_value_element_as_str()}"]
        return list(lists.values()), True
    if target.endswith("OptunaSweeper"):  # the plugin's, or ours (hparams_search=optuna)
        from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
        from optuna.distributions import CategoricalDistribution

        if sweeper.get("custom_search_space") or sweeper.get("search_space"):
            return None
        space, shared = create_params_from_overrides([*params, *overrides])
        searched = [
            [f"{key}={v}" for v in _searched_values(distribution)]
            for key, distribution in space.items()
            if key not in shared
        ]
        complete = all(isinstance(space[key], CategoricalDistribution) for key in space if key not in shared)
        return [*searched, *([f"{key}={v}"] for key, v in shared.items())], complete
    return None


@contextlib.contextmanager
def _as_sweep_job(cfg: DictConfig, num: int) -> Iterator[None]:
    """Within it, ``cfg``'s Hydra node is the running job's (:class:`~hydra.core.hydra_config.HydraConfig`),
    as a sweep's job number ``num``: a value made of it (``hparams_search=optuna``'s W&B name,
    ``trial-${hydra:job.num}``) did not resolve before Hydra started, and the trial was left unchecked.
    The Hydra config that was set before is set again after."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra = HydraConfig.instance()
    before = hydra.cfg
    with open_dict(cfg):
        cfg.hydra.job.num = num
        cfg.hydra.mode = RunMode.MULTIRUN
    hydra.set_config(cfg)
    try:
        yield
    finally:
        hydra.cfg = before


class _GroupOptions:
    """Hydra's config loader listing a config group's options (what a glob sweep asks it) with the search
    path of the command's ``--config-dir`` folder (``added``: composed here as ``hydra.searchpath``)."""

    def __init__(self, loader: Any, added: list[str]) -> None:
        self._loader, self._added = loader, added

    def get_group_options(self, group_name: str, results_filter: Any = None) -> list[str]:
        return list(self._loader.get_group_options(group_name, results_filter, overrides=self._added))


def _searched_values(distribution: Any) -> list[Any]:
    """The values an Optuna study's trials are checked with: each choice of a categorical distribution, the
    two ends of an interval (its samples lie between them)."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    return [distribution.low, distribution.high]


def _checked_trials(dims: list[list[str]]) -> tuple[list[list[str]], bool]:
    """The trials to check of a sweep whose options take the values ``dims``, and whether they are all of
    its trials: every combination, up to :data:`MAX_CHECKED_TRIALS`; else the first trial, the first with
    each value of one option (all of an option of up to 14 values, else 8 to 11 spread from end to end),
    and the last. (An Optuna study's intervals are listed by their ends only: never all.)"""
    import itertools
    import math

    if math.prod(len(d) for d in dims) <= MAX_CHECKED_TRIALS:
        return [list(t) for t in itertools.product(*dims)], True
    first = [d[0] for d in dims]
    trials = [first]
    for i, values in enumerate(dims):
        step = max(1, (len(values) - 1) // 7)
        for value in [*values[step:-1:step], values[-1]] if len(values) > 1 else []:
            trials.append([*first[:i], value, *first[i + 1 :]])
    trials.append([d[-1] for d in dims])
    return trials, False


def claim_sweep_folder(argv: Sequence[str], config_dir: Path) -> tuple[str | None, list[str]]:
    """Take a sweep's claim on its folder (``hydra.sweep.dir``) before Hydra starts; returns the refusal when
    another live sweep holds it or an earlier one left its trials there, else ``(None, argv)``, with the
    clock-made default folder pinned on the command line (``hydra.sweep.dir=...``) as composed here.

    The default folder is named by the second the sweep starts (``multirun-<time>``): two sweeps started in
    the same second (a job array of sweeps), or a sweep given an earlier sweep's ``hydra.sweep.dir``, ran
    their trials in the same ``<n>/`` folders. Hydra rewrote each trial's ``.hydra/`` record before the
    trial's run refused the folder, with advice (``run_name=``) that does not move a sweep's trials. Left
    to the sweep: a folder that does not compose here (a swept folder option, another primary config).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from marsunits.run_folder_claim import CLAIM_NAME, hold_sweep_folder_for_process, sweep_folder_holder

    argv = list(argv)
    keys = [a.split("=", 1)[0].lstrip("+") for a in argv]
    if any(k in _CONFIG_FLAGS or k.startswith(_CONFIG_FLAGS) for k in keys):
        return None, argv
    overrides = _overrides(argv)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # noqa: BLE001 - Hydra reports an override it cannot read
        return None, argv
    if any(o.is_sweep_override() and o.get_key_element().lstrip("+") in _SWEEP_FOLDER_KEYS for o in parsed):
        return None, argv  # a swept folder option: the folder is not one
    fixed = [a for a, o in zip(overrides, parsed, strict=True) if not o.is_sweep_override()]
    # A swept config choice may set the task (debug=fdr,overfit: logs/debug/): compose each of its values.
    choices = [
        o for o in parsed if o.is_sweep_override() and (config_dir / o.get_key_element().lstrip("+")).is_dir()
    ]
    given = [i for i, a in enumerate(argv) if a.split("=", 1)[0].lstrip("+") == "hydra.sweep.dir"]
    if given and "${hydra" in argv[given[-1]]:
        return None, argv  # made of Hydra's runtime values, unknown here
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        try:
            values = [(c.get_key_element(), _choice_values(c, config_dir)) for c in choices]
            first = [f"{key}={options[0]}" for key, options in values if options]
            cfg = compose("train", overrides=[*fixed, *first], return_hydra_config=True)
            folder = Path(str(cfg.hydra.sweep.dir))
            where = [OmegaConf.select(cfg, k) for k in _SWEEP_FOLDER_KEYS[1:]]  # not the clock: it ticks
            for key, options in values:
                for value in options[1:]:
                    other = compose("train", [*fixed, *first, f"{key}={value}"], return_hydra_config=True)
                    if [OmegaConf.select(other, k) for k in _SWEEP_FOLDER_KEYS[1:]] != where:
                        return None, argv  # the trials' folders differ: left to the sweep
        except Exception:  # noqa: BLE001 - anything unresolvable here is Hydra's to report when it runs
            return None, argv
    folder = folder if folder.is_absolute() else Path.cwd() / folder
    held = sweep_folder_holder(folder)
    if held is not None:
        return held, argv
    left = sorted(p.name for p in folder.iterdir() if p.name != CLAIM_NAME) if folder.is_dir() else []
    if left:
        again = (
            "give it another folder, hydra.sweep.dir=<new folder>"
            if given
            else "run the command again (its default folder is named by the second it starts), or give it "
            "its own folder, hydra.sweep.dir=<new folder>"
        )
        return (
            f"sweep folder {folder} already holds another sweep's {some_of(left, 3)}: this sweep's trials "
            f"would be written in the same folders. {again[0].upper()}{again[1:]}"
        ), argv
    try:
        refused = hold_sweep_folder_for_process(folder)
    except OSError:  # the folder cannot be made: Hydra says so
        return None, argv
    if refused is not None:
        return refused, argv
    # A given folder is pinned too, as composed: the clock may be in it (${now:...}, or ${run_name}, made of
    # it), and Hydra's would be a moment later.
    argv = [a for i, a in enumerate(argv) if i not in given]
    return None, _with_override(argv, f"hydra.sweep.dir={_hydra_quoted(str(folder))}")


def _choice_values(choice: Override, config_dir: Path) -> list[str]:
    """The options a swept config-group choice runs (``debug=fdr,overfit``, ``experiment=glob(synth*)``)."""
    from hydra.core.override_parser.types import Glob

    value = choice.value()
    if isinstance(value, Glob):  # its own iterator needs Hydra's config loader: filtered here
        group = config_dir / choice.get_key_element().lstrip("+")
        return list(value.filter(sorted(p.stem for p in group.glob("*.yaml"))))
    return [str(v) for v in choice.sweep_string_iterator()]


#: Options whose value names the sweep folder (``hydra.sweep.dir`` is made of them).
_SWEEP_FOLDER_KEYS = ("hydra.sweep.dir", "paths.log_dir", "paths.root_dir", "task_name")


#: Hydra flags that choose another primary config or config folder: the check here composes ``train``.
_CONFIG_FLAGS = ("--config-name", "-cn", "--config-dir", "-cd", "--config-path", "-cp")

#: Options whose value names the run folder (``hydra.run.dir`` is made of them).
_FOLDER_KEYS = ("run_name", "hydra.run.dir", "paths.log_dir", "paths.root_dir", "task_name")


#: Free bytes below which the disk of the log folder counts as full (Hydra's record and the log of a run
#: need a few kB; a checkpoint much more, and says so itself when it does not fit).
MIN_FREE_BYTES = 1 << 20

#: Flags that print something and run nothing (no run folder is made).
_INFORMATIONAL = (
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
_SHELL_COMPLETION = ("--shell-completion", "-sc")

#: Flags that run a job in a folder the command line does not name: ``--experimental-rerun`` runs the
#: pickled config of an earlier run, in that run's folder.
_OTHER_RUN = ("--experimental-rerun",)


def unwritable_log_dir(argv: Sequence[str], cwd: Path | None = None) -> str | None:
    """Why the folder Hydra makes the run folder in (``paths.log_dir``: by default ``logs/`` under the folder
    the command is run from) cannot be made or written, or None. Hydra makes it before any of the
    command's own code runs, so a command started from a read-only folder (a data disk) ended in Hydra's
    traceback. Only ``paths.log_dir=`` and ``paths.root_dir=`` overrides and ``MARSUNITS_ROOT`` are read
    here; a log folder set another way is left to Hydra."""
    if any(a.split("=", 1)[0] in _INFORMATIONAL for a in argv):
        return None  # --help, --cfg job, --info: nothing is made
    values = {a.split("=", 1)[0].lstrip("+"): a.split("=", 1)[1] for a in argv if "=" in a}
    if "hydra.run.dir" in values or "hydra.sweep.dir" in values:
        return None  # the run folder is given another way: Hydra makes it
    if "paths.log_dir" in values:
        log_dir = Path(values["paths.log_dir"].strip("'\""))
    else:
        root = values.get("paths.root_dir") or os.environ.get("MARSUNITS_ROOT") or str(cwd or Path.cwd())
        log_dir = Path(root.strip("'\"")) / "logs"
    if "${" in str(log_dir):
        return None  # an interpolation: Hydra resolves it
    log_dir = log_dir if log_dir.is_absolute() else (cwd or Path.cwd()) / log_dir
    existing = log_dir
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        try:
            st = os.statvfs(existing)
        except OSError:
            return None
        free = st.f_bavail * st.f_frsize
        if free >= MIN_FREE_BYTES:
            return None
        # Hydra writes its .hydra/ record there first, and a full disk ended in its traceback, naming no file.
        return (
            f"cannot make the run folder under {log_dir}: the disk holding {existing} is full "
            f"({free // 1024} kB free). Free space, or add paths.log_dir=<a folder on another disk>"
        )
    why = "is not a folder" if existing.exists() and not existing.is_dir() else "is not writable"
    return (
        f"cannot make the run folder under {log_dir}: {existing} {why}. Run the command from a folder you "
        "can write to, or add paths.log_dir=<a writable folder>"
    )
