"""Import the class or function a Hydra ``_target_`` names, quietly, and say in one line why one does not.

Hydra's ``hydra.utils.get_object`` logs an error line ("Error getting object at ...") before it raises, so a
check that only asks whether a class imports printed Hydra's message on the console, and its own after it;
its ``_locate`` says "Are you sure that module 'mypkg' is installed?" also where ``mypkg`` is there and a
module *it* imports is missing. :func:`locate` imports as ``_locate`` does (the first part as a module, then
each next part as an attribute, else as a submodule) with :mod:`importlib`, and tells those cases apart.
Hand-written for that reason: no library says which part of a dotted path failed, and why.
"""

from __future__ import annotations

import difflib
import importlib
import os
import pkgutil
import sys
import traceback
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from marsunits.errors import some_of

__all__ = ["UnimportableTargetError", "locate", "target_refusal", "unimportable_target"]


class UnimportableTargetError(ImportError):
    """A ``_target_`` that does not give a class or function.

    Attributes:
        reason: What failed, in one line (``no module named 'mypkg'``).
        remedy: What to do, in one line, with ``{key}`` where the option's name goes.
    """

    def __init__(self, reason: str, remedy: str) -> None:
        super().__init__(reason)
        self.reason, self.remedy = reason, remedy

    def __reduce__(self) -> tuple[type[UnimportableTargetError], tuple[str, str]]:
        # Pickled with the arguments of __init__ (ImportError's default passes the reason alone, and
        # unpickling then fails for want of the remedy), so the error crosses a process boundary (a
        # worker, a sweep's trial, another rank) as raised.
        return type(self), (self.reason, self.remedy)


def _one_line(exc: BaseException) -> str:
    """``ExcType: message`` of ``exc`` on one line (a message of several lines joined with spaces)."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _where(exc: BaseException) -> str:
    """``line N of <file>`` of the innermost line of code outside the import machinery that ``exc`` went
    through (the ``import`` in the user's module that failed), or "" where there is none."""
    if isinstance(exc, SyntaxError) and exc.filename:  # raised by the compiler: no frame of the file
        return f"line {exc.lineno} of {exc.filename}"
    machinery = (os.path.dirname(importlib.__file__), __file__)
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(("<", *machinery))
    ]
    return f"line {frames[-1].lineno} of {frames[-1].filename}" if frames else ""


def _closest(name: str, known: list[str]) -> str | None:
    """The known name most like ``name`` (the same but for case first), or None."""
    same = [k for k in known if k.lower() == name.lower()]
    close = same or difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return close[0] if close else None


def _names_in(module: ModuleType) -> list[str]:
    """The public names of ``module`` and, for a package, its submodules (not imported yet)."""
    names = {n for n in dir(module) if not n.startswith("_")}
    path = getattr(module, "__path__", None)
    if path is not None:
        names |= {m.name for m in pkgutil.iter_modules(path)}
    return sorted(names)


def _import_failure(module: str, exc: Exception) -> UnimportableTargetError:
    """The failure of importing ``module`` (a part of a target) with ``exc``: a module it imports is
    missing, or it raised."""
    where = _where(exc)
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        # The module is there: an import in it (or in a module it imports) names one that is not.
        return UnimportableTargetError(
            f"importing {module} failed: {where or module} imports {exc.name!r}, and there is no module "
            f"named {exc.name!r}",
            f"install the package that provides {exc.name!r} in this Python environment "
            "(pip install <that package>), or fix that import",
        )
    # A SyntaxError's str() names the file without its folder: said whole by _where.
    said = f"{type(exc).__name__}: {exc.msg}" if isinstance(exc, SyntaxError) else _one_line(exc)
    at = f" ({where})" if where else ""
    return UnimportableTargetError(
        f"importing {module} raised {said}{at}", f"fix what {module} does when it is imported"
    )


def _no_such_name(
    path: str, parts: list[str], m: int, names: list[str], owner: str
) -> UnimportableTargetError:
    """``parts[m]`` is not in ``owner`` (``parts[:m]``): said with the closest of its ``names``."""
    part = parts[m]
    guess = _closest(part, names)
    hint = f" (did you mean {guess!r}?)" if guess else ""
    if guess is not None:
        remedy = "fix the dotted path, e.g. {key}=" + ".".join([*parts[:m], guess, *parts[m + 1 :]])
    elif path.startswith("marsunits."):
        remedy = f"fix the dotted path; {'.'.join(parts[:m])} has {some_of(names, 8)}"
    else:
        remedy = (
            "fix the dotted path, or install the version of the package that has it "
            "(pip install -e <your package>, after a change to it)"
        )
    return UnimportableTargetError(f"{owner} has no {part!r}{hint}", remedy)


def locate(path: str) -> Any:
    """The object the dotted ``path`` (a ``_target_``) names, imported without a word on the console.

    Raises:
        UnimportableTargetError: naming the part that failed: a top-level module that is not installed, a name
            its parent does not have (with the closest it has), a module that raised while imported (a
            module it imports that is missing, named with the import that failed), or a path that is not
            dotted names.
    """
    parts = path.split(".")
    if not path or not all(parts):
        raise UnimportableTargetError(
            "not a dotted path", "give package.module.Class, e.g. {key}=mypkg.data.MyClass"
        )
    try:
        obj: Any = importlib.import_module(parts[0])
    except ModuleNotFoundError as exc:
        if exc.name != parts[0]:
            raise _import_failure(parts[0], exc) from exc
        top = sorted({m.name for m in pkgutil.iter_modules()} | set(sys.builtin_module_names))
        guess = difflib.get_close_matches(parts[0], top, n=1, cutoff=0.8)
        hint = f" (did you mean {guess[0]!r}?)" if guess else ""
        raise UnimportableTargetError(
            f"no module named {parts[0]!r}{hint}",
            "install the package that holds it (pip install -e <your package>), or fix the dotted path",
        ) from exc
    except Exception as exc:  # noqa: BLE001 - whatever the module raised, said in one line
        raise _import_failure(parts[0], exc) from exc
    for m in range(1, len(parts)):
        parent = ".".join(parts[:m])
        try:
            obj = getattr(obj, parts[m])
            continue
        except AttributeError:
            pass
        except Exception as exc:  # noqa: BLE001 - a module's __getattr__ that raised
            raise _import_failure(parent, exc) from exc
        if not isinstance(obj, ModuleType):
            names = sorted(n for n in dir(obj) if not n.startswith("_"))
            raise _no_such_name(path, parts, m, names, parent)
        module = ".".join(parts[: m + 1])
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise _import_failure(module, exc) from exc
            raise _no_such_name(path, parts, m, _names_in(obj), f"module {parent!r}") from exc
        except Exception as exc:  # noqa: BLE001 - whatever the module raised, said in one line
            raise _import_failure(module, exc) from exc
    return obj


def target_refusal(key: str, target: str) -> str | None:
    """``<key>=<target>: <what failed>; <what to do>`` for a ``_target_`` (``key``, e.g.
    ``data._target_``) that does not give a class or function (:func:`locate`), or None."""
    try:
        obj = locate(target)
    except UnimportableTargetError as failed:
        return f"{key}={target}: {failed.reason}; {failed.remedy.format(key=key)}"
    if callable(obj):
        return None
    if isinstance(obj, ModuleType):
        classes = [n for n, v in vars(obj).items() if isinstance(v, type) and v.__module__ == obj.__name__]
        example = f"{target}.{classes[0]}" if len(classes) == 1 else f"{target}.<Class>"
        return (
            f"{key}={target}: {target} is a module, not a class or function; name the class, e.g. "
            f"{key}={example}"
        )
    return (
        f"{key}={target}: {target} is a value of type {type(obj).__name__}, not a class or function; "
        "give the dotted path of the class to build"
    )


def _targets(node: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(dotted key, value)`` of each ``_target_`` under ``node`` (a config; its ``hydra`` node left out),
    in config order. An interpolated node or a value that does not resolve here is left out (the run
    resolves it)."""
    if isinstance(node, DictConfig):
        keys: list[Any] = list(node.keys())
    elif isinstance(node, ListConfig):
        keys = list(range(len(node)))
    else:
        return
    for key in keys:
        if not prefix and key == "hydra":
            continue
        dotted = f"{prefix}{key!s}"
        try:
            if OmegaConf.is_interpolation(node, key) and key != "_target_":
                continue
            value = node[key]
        except Exception:  # noqa: BLE001 - missing (???) or unresolvable here: said elsewhere
            continue
        if key == "_target_":
            if isinstance(value, str):
                yield dotted, value
        elif isinstance(value, DictConfig | ListConfig):
            yield from _targets(value, f"{dotted}.")


def unimportable_target(cfg: DictConfig) -> str | None:
    """The refusal of the first ``_target_`` of ``cfg`` (any node but ``hydra``: the data module, the task,
    the trainer and its plugins, callbacks, loggers) that does not give a class or function
    (:func:`target_refusal`), or None."""
    for key, target in _targets(cfg):
        refused = target_refusal(key, target)
        if refused is not None:
            return refused
    return None
