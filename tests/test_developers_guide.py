"""DEVELOPERS.md's module map is the package as it is: no module without its line, none for one gone; its
dependency floors are pyproject.toml's."""

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import REPO_ROOT, user_docs_text

GUIDE = REPO_ROOT / "DEVELOPERS.md"
SRC = REPO_ROOT / "src"


def _modules() -> set[str]:
    """Every module of the package and of its Hydra plugins, as a path under ``src/`` (packages' ``__init__``
    files aside: the package's line is its modules')."""
    return {
        p.relative_to(SRC).as_posix()
        for p in SRC.rglob("*.py")
        if p.name != "__init__.py" and "__pycache__" not in p.parts
    }


def _named_in_guide() -> set[str]:
    """The modules the guide's tables name: a first cell holding a path under ``src/`` in backticks."""
    text = GUIDE.read_text(encoding="utf-8")
    return set(re.findall(r"^\| `((?:marsunits|hydra_plugins)/[\w/]+\.py)` \|", text, flags=re.MULTILINE))


def test_every_module_has_its_line_in_the_developers_guide() -> None:
    modules = _modules()
    assert len(modules) > 80, "the package's modules were not found under src/"
    missing = sorted(modules - _named_in_guide())
    assert not missing, f"modules without a line in DEVELOPERS.md's module map: {missing}"


def test_the_developers_guide_names_no_module_that_is_gone() -> None:
    gone = sorted(_named_in_guide() - _modules())
    assert not gone, f"DEVELOPERS.md names modules that src/ does not hold: {gone}"


def test_the_readme_points_developers_to_the_guide() -> None:
    assert "DEVELOPERS.md" in (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def test_every_test_the_readme_s_tables_name_is_in_the_file_they_name() -> None:
    """The user docs' tables (README.md, docs/) and DEVELOPERS.md's (the tests behind each troubleshooting
    row) cite tests as ``test_x.py::test_name`` and, after it,
    ``::test_other`` (same file).
    A row that inserted another file's tests before a ``::`` name sent readers to a file without that test
    (the failure table's native-ids row named a ``test_predict_reports.py`` test under
    ``test_evaluation.py``)."""
    cited, wrong = 0, []
    developers = (REPO_ROOT / "DEVELOPERS.md").read_text(encoding="utf-8")
    for line in (user_docs_text() + "\n" + developers).splitlines():
        if not line.startswith("|"):
            continue
        current = None
        # `test_x.py::test_a`, `::test_b` (test_x.py's), or `test_x.py` alone, whose tests follow as `::...`.
        cites = re.findall(r"`(?:tests/)?(test_\w+\.py)?(?:::(test_\w+)(?:\[[^\]`]*\])?)?`", line)
        for file, name in cites:
            current = file or current
            if not name:
                continue
            cited += 1
            path = REPO_ROOT / "tests" / (current or "")
            text = path.read_text(encoding="utf-8") if current is not None and path.is_file() else ""
            found = f"def {name}(" in text
            if not found:
                wrong.append(f"{current}::{name}")
    assert cited > 100, "the docs' tables were not read"
    assert not wrong, f"the docs cite tests that are not in the file it names: {wrong}"


def _floors_in_pyproject() -> dict[str, Version]:
    """pyproject.toml's runtime dependencies, each with its lower bound (``>=``), by normalised name."""
    with open(REPO_ROOT / "pyproject.toml", "rb") as file:
        dependencies = tomllib.load(file)["project"]["dependencies"]
    floors = {}
    for requirement in map(Requirement, dependencies):
        lower = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
        floors[canonicalize_name(requirement.name)] = max(lower) if lower else Version("0")
    return floors


def _floors_in_guide() -> dict[str, Version]:
    """The floors DEVELOPERS.md's "Dependency floors" tables give: a row's first cell names the libraries
    (``torch, torchvision``), its second their floors in the same order (``2.4.0, 0.19.0``, each perhaps
    followed by a note in brackets)."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("\n## Dependency floors\n", 1)[1].split("\n## ", 1)[0]
    floors = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 3 or cells[0] == "library" or set(cells[0]) <= {"-"}:
            continue
        names = [name.strip() for name in cells[0].split(",")]
        versions = re.findall(r"(?:^|,\s*)(\d[\w.]*)", cells[1])
        assert len(names) == len(versions), f"DEVELOPERS.md's floor row names {names} but gives {versions}"
        for name, version in zip(names, versions, strict=True):
            floors[canonicalize_name(name)] = Version(version)
    return floors


def test_the_developers_guide_gives_each_dependency_its_pyproject_floor() -> None:
    """Each floor DEVELOPERS.md says was checked is the one pyproject.toml asks for, and every runtime
    dependency has its row: a floor raised in one file alone (hydra-optuna-sweeper's, 1.2 then, which
    cannot compose ``hparams_search=optuna``) left the other saying what was not tested."""
    wanted, given = _floors_in_pyproject(), _floors_in_guide()
    assert len(wanted) > 20, "pyproject.toml's dependencies were not read"
    unlisted = sorted(set(wanted) - set(given))
    assert not unlisted, f"dependencies of pyproject.toml without a row in DEVELOPERS.md's floors: {unlisted}"
    differ = {name: (str(wanted[name]), str(given[name])) for name in wanted if wanted[name] != given[name]}
    assert not differ, f"floors (pyproject.toml, DEVELOPERS.md) that differ: {differ}"
    gone = sorted(set(given) - set(wanted))
    assert not gone, f"DEVELOPERS.md's floors name libraries pyproject.toml does not ask for: {gone}"
