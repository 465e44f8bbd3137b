"""The docs stand alone: no file of the repository points outside it, and every relative link of the docs resolves.

The command blocks of the same pages are run by ``tests/test_doc_commands.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

from tests.test_doc_commands import DOC_FILES, REPO

OUTSIDE = re.compile("|".join(re.escape(name) for name in ("REFERENCE" + ".md", "DESIGN" + ".md", ".." + "/shared")),
                     re.IGNORECASE)
"""Internal notes kept outside the repository (spelt in pieces so that this file does not name them)."""

_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE_SPAN = re.compile(r"(`+).*?\1")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_DOC_ANCHOR = re.compile(r"\bdocs/([\w-]+\.md)#([\w-]+)")


def tracked_files() -> list[Path]:
    """The repository's tracked files (``git ls-files``)."""
    try:
        result = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"not a git checkout: {error}")
    return [REPO / name for name in result.stdout.decode().split("\0") if name]


def text_lines(path: Path) -> list[str]:
    """The lines of a text file; [] for a binary file (one holding a NUL byte, as git decides) or a missing one."""
    data = path.read_bytes() if path.is_file() else b"\0"
    return [] if b"\0" in data else data.decode("utf-8", errors="replace").splitlines()


def outside_mentions(path: Path, root: Path = REPO) -> list[str]:
    """``file:line: name`` for each mention of a note outside the repository in a text file."""
    return [f"{path.relative_to(root)}:{number}: {match.group(0)}"
            for number, line in enumerate(text_lines(path), 1) for match in OUTSIDE.finditer(line)]


def dangling_doc_anchors(path: Path, root: Path = REPO) -> list[str]:
    """``file:line: docs/<page>.md#<anchor>`` for each citation of a docs page's heading that the page lacks, in a
    text file (a link, or plain text as in a docstring)."""
    problems = []
    for number, line in enumerate(text_lines(path), 1):
        for page, anchor in _DOC_ANCHOR.findall(line):
            target = root / "docs" / page
            if not target.is_file() or anchor not in anchors(target):
                problems.append(f"{path.relative_to(root)}:{number}: docs/{page}#{anchor}")
    return problems


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines of a Markdown file outside fenced code blocks, code spans removed."""
    lines, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, _CODE_SPAN.sub("", line)))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: link text kept, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """The heading anchors of a Markdown file, repeated headings numbered as GitHub does (``-1``, ``-2``)."""
    names, counts = set(), {}
    for _, line in prose_lines(path):
        match = _HEADING.match(line)
        if match:
            base = slug(match.group(1))
            count = counts[base] = counts.get(base, -1) + 1
            names.add(f"{base}-{count}" if count else base)
    return frozenset(names)


def broken_links(path: Path, root: Path = REPO) -> list[str]:
    """``file:line: target (problem)`` for each relative link of ``path`` to a missing file or heading, or out of
    ``root``."""
    problems = []
    for number, line in prose_lines(path):
        for target in _LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:, ...
                continue
            file_part, _, anchor = target.partition("#")
            linked = Path(os.path.normpath(path.parent / file_part)) if file_part else path
            where = f"{path.relative_to(root)}:{number}: {target}"
            if not linked.exists():
                problems.append(f"{where} (no such file)")
            elif not linked.is_relative_to(root):
                problems.append(f"{where} (outside the repository)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                problems.append(f"{where} (no heading with that anchor in {linked.relative_to(root)})")
    return problems


def test_no_file_points_outside_the_repository():
    hits = [hit for path in tracked_files() for hit in outside_mentions(path)]
    assert not hits, "files that cite notes users do not have (cite docs/studies.md instead):\n" + "\n".join(hits)


def test_doc_headings_cited_anywhere_exist():
    problems = [problem for path in tracked_files() for problem in dangling_doc_anchors(path)]
    assert not problems, "citations of docs headings that do not exist:\n" + "\n".join(problems)


def test_relative_links_of_the_docs_resolve():
    problems = [problem for path in DOC_FILES for problem in broken_links(path)]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_studies_page_is_linked_and_has_a_section_per_study():
    studies = REPO / "docs" / "studies.md"
    expected = {"kaggle-nerve-segmentation", "brats-resu-net-with-monte-carlo-dropout", "x-ray-multiclass-u-net",
                "r2u-net-on-skin-lesions", "r2u-net-on-retinal-vessels"}
    assert expected <= anchors(studies)
    for page in (REPO / "README.md", REPO / "docs" / "index.md"):
        assert "studies.md" in page.read_text(encoding="utf-8"), f"{page.name} does not link docs/studies.md"


def test_link_checker_reports_missing_files_and_headings(tmp_path):
    (tmp_path / "a.md").write_text("# Top\n\n## The R2U-Net structure (2D)\n\n## Top\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "[ok](a.md) [ok](a.md#the-r2u-net-structure-2d) [ok](a.md#top-1) [ok](https://x.org/y) [ok](#here)\n"
        "# Here\n```bash\n[not a link](nowhere.md)\n```\n`[code](nowhere.md)`\n"
        "[gone](missing.md) [bad](a.md#nothing) ![img](img.png)\n"
    )
    assert broken_links(doc, tmp_path) == [
        "doc.md:7: missing.md (no such file)",
        "doc.md:7: a.md#nothing (no heading with that anchor in a.md)",
        "doc.md:7: img.png (no such file)",
    ]


def test_outside_mentions_names_file_and_line(tmp_path):
    shared, design = ".." + "/shared", "design" + ".MD"  # in pieces: this file must pass the test above
    text = tmp_path / "notes.py"
    text.write_text(f"# fine\n# see {shared}/x and {design}\n")
    binary = tmp_path / "weights.bin"
    binary.write_bytes(b"\0" + design.encode())
    assert outside_mentions(text, tmp_path) == [f"notes.py:2: {shared}", f"notes.py:2: {design}"]
    assert outside_mentions(binary, tmp_path) == [] and outside_mentions(tmp_path / "gone.md", tmp_path) == []


def test_dangling_doc_anchors_names_file_and_line(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "studies.md").write_text("# Studies\n\n## The two-head solution\n")
    docs = "docs" + "/"  # in pieces: this file must pass the test above
    code = tmp_path / "net.py"
    code.write_text(f"# See {docs}studies.md#the-two-head-solution.\n\n# And {docs}studies.md#gone, {docs}none.md#x.\n")
    assert dangling_doc_anchors(code, tmp_path) == [f"net.py:3: {docs}studies.md#gone", f"net.py:3: {docs}none.md#x"]
