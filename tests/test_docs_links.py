"""Every relative link of the Markdown pages leads somewhere: to a file of the repository and, where it
names an ``#anchor``, to a heading (or an ``<a id>``) of that file with that GitHub anchor.

The README was split into a front page and docs/*.md; a link left pointing at a section that moved to
another page, or at a heading since renamed, sends a reader to the top of a page or to GitHub's 404.
"""

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from conftest import REPO_ROOT

PAGES = sorted(
    [
        REPO_ROOT / "README.md",
        REPO_ROOT / "CHANGELOG.md",
        REPO_ROOT / "DEVELOPERS.md",
        REPO_ROOT / "RESULTS.md",
        REPO_ROOT / "data" / "README.md",
        *(REPO_ROOT / "docs").glob("*.md"),
    ]
)

# `[text](target)` and `![alt](target)`, the target up to the first space (a title may follow) or `)`;
# `<target>` in angle brackets as CommonMark allows.
_INLINE_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]*)[^)]*\)")
# `[label]: target` reference definitions.
_REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.MULTILINE)
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_EXPLICIT_ANCHOR = re.compile(r"<a\s+(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """The page's lines outside fenced code blocks, with their line numbers: a link or a heading written in
    a code block is an example, not a link."""
    lines: list[tuple[int, str]] = []
    fence = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            continue
        if fence is not None:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
            continue
        lines.append((number, line))
    return lines


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: its text as shown (links reduced to their text, code and
    emphasis marks dropped), lower-case, punctuation other than '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    # HTML tags are dropped outside code spans; inside one, `<stem>.mask.png` is text.
    parts = re.split(r"(`+[^`]*`+)", text)
    text = "".join(part if part.startswith("`") else re.sub(r"<[^>]+>", "", part) for part in parts)
    text = text.strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors_of(page: Path) -> set[str]:
    """Every anchor a page offers: its headings' (a repeated heading gets '-1', '-2', ... as on GitHub) and
    its explicit ``<a id="...">`` / ``<a name="...">``."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _prose_lines(page.read_text(encoding="utf-8")):
        anchors.update(_EXPLICIT_ANCHOR.findall(line))
        match = _HEADING.match(line)
        if not match:
            continue
        base = github_anchor(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        anchors.add(base if count == 0 else f"{base}-{count}")
    return anchors


def relative_links(page: Path) -> list[tuple[int, str]]:
    """The page's links that are not URLs (no scheme, not protocol-relative), with their line numbers; links
    in code blocks and code spans left out."""
    links = []
    for number, line in _prose_lines(page.read_text(encoding="utf-8")):
        line = _CODE_SPAN.sub("", line)  # `[x](y)` in a code span is an example too
        targets = _INLINE_LINK.findall(line) + _REFERENCE_DEFINITION.findall(line)
        for target in targets:
            target = target.strip("<>")
            if not target or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("//"):
                continue
            links.append((number, target))
    return links


def broken_links(page: Path, root: Path = REPO_ROOT) -> list[str]:
    """One line per link of the page (a file under ``root``) that leads nowhere, saying why."""
    broken = []
    for number, target in relative_links(page):
        path_part, _, anchor = target.partition("#")
        path_part = unquote(path_part)
        if path_part.startswith("/"):
            destination = (root / path_part.lstrip("/")).resolve()
        else:
            destination = (page.parent / path_part).resolve() if path_part else page
        where = f"{page.relative_to(root)}:{number}: ({target})"
        if not destination.exists():
            broken.append(f"{where}: no such file")
            continue
        if not destination.is_relative_to(root.resolve()):
            broken.append(f"{where}: outside the repository")
            continue
        if anchor and destination.suffix == ".md" and unquote(anchor) not in anchors_of(destination):
            broken.append(
                f"{where}: {destination.relative_to(root.resolve())} has no heading with that anchor"
            )
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_every_relative_link_leads_to_a_file_and_a_heading_that_exist(page: Path) -> None:
    assert page.is_file(), f"{page} is gone: update this test's list of pages"
    broken = broken_links(page)
    assert not broken, "links that lead nowhere:\n" + "\n".join(broken)


def test_the_pages_hold_links_this_test_reads() -> None:
    """The link pattern finds the pages' links (a pattern that matched nothing would pass every page)."""
    links = [target for page in PAGES for _, target in relative_links(page)]
    assert "docs/training.md" in links
    assert any("#" in target for target in links)
    assert len(links) > 50


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("From Python (`UnitMapper`)", "from-python-unitmapper"),
        ("`summary.json`", "summaryjson"),
        ("Re-runs and resuming", "re-runs-and-resuming"),
        ("GPUs and several processes (DDP)", "gpus-and-several-processes-ddp"),
        ("Non-UTF-8 names and the last paragraph", "non-utf-8-names-and-the-last-paragraph"),
        ("The run's log", "the-runs-log"),
        ("`<stem>.mask.png`", "stemmaskpng"),
        ('<a id="x"></a>Title', "title"),
        ("a [linked](x.md) snake_case title", "a-linked-snake_case-title"),
    ],
)
def test_github_anchor_follows_github_s_rule(heading: str, anchor: str) -> None:
    assert github_anchor(heading) == anchor


def test_a_missing_file_a_missing_anchor_and_a_repeated_heading_are_told(tmp_path: Path) -> None:
    """The checker is exercised on a page of known faults, not only on pages that pass."""
    (tmp_path / "docs").mkdir()
    other = tmp_path / "docs" / "other.md"
    other.write_text(
        '# Title\n\n## Usage\n\n## Usage\n\n<a id="custom"></a>\n```\n# not a heading\n```\n',
        encoding="utf-8",
    )
    assert anchors_of(other) == {"title", "usage", "usage-1", "custom"}
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "[ok](other.md#usage-1) [ok2](other.md#custom) [self](#a-heading) [gone](missing.md)\n"
        "[bad](other.md#nowhere) [out](../../x.md) `[in code](missing2.md)` [web](https://example.org/x.md)\n"
        "```\n[fenced](missing3.md)\n```\n## A heading\n",
        encoding="utf-8",
    )
    assert [target for _, target in relative_links(page)] == [
        "other.md#usage-1",
        "other.md#custom",
        "#a-heading",
        "missing.md",
        "other.md#nowhere",
        "../../x.md",
    ]
    broken = broken_links(page, root=tmp_path)
    assert len(broken) == 3, broken
    assert "(missing.md): no such file" in broken[0]
    assert "(other.md#nowhere): docs/other.md has no heading with that anchor" in broken[1]
    assert "(../../x.md)" in broken[2]
