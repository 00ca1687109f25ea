"""DEVELOPERS.md's module map is the package as it is: no module without its line, none for one gone."""

import re

from conftest import REPO_ROOT

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
