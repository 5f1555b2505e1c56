"""The documentation's layout stays true: a README a newcomer reads in five minutes, every page under docs/ reached
from it, and every relative link (files, images, #anchors) pointing at something that exists."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
README_MAX_LINES = 250
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def prose(text: str) -> str:
    """The text outside fenced code blocks, HTML comments and inline code spans, where links are links."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    kept, fence = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if not fence:
            kept.append(line)
    return re.sub(r"`[^`\n]*`", "code", "\n".join(kept))


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped (inline code keeps its text),
    spaces as hyphens, -1, -2 on repeats."""
    seen: dict[str, int] = {}
    found = set()
    fence = False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        heading = None if fence else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).replace("`", "").lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(path: Path) -> list[str]:
    return [target for target in LINK.findall(prose(path.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)]  # http:, https:, mailto: are not checked


def test_the_readme_reads_in_five_minutes():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, (f"README.md has {lines} lines, more than {README_MAX_LINES}: move the details "
                                       "to a page under docs/ and link it")


def test_there_are_pages_and_the_readme_links_each():
    assert PAGES, "docs/ holds no Markdown page"
    linked = {(README.parent / target.split("#")[0]).resolve() for target in relative_links(README)}
    orphans = [page.name for page in PAGES if page.resolve() not in linked]
    assert not orphans, f"pages under docs/ that README.md does not link: {orphans}"


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_what_exists(page):
    broken = []
    for target in relative_links(page):
        file, _, anchor = target.partition("#")
        destination = (page.parent / file).resolve() if file else page
        if not destination.exists():
            broken.append(f"{target}: no file {destination}")
        elif anchor and destination.suffix == ".md" and anchor not in heading_anchors(destination):
            broken.append(f"{target}: no heading with anchor #{anchor} in {destination.name}")
    assert not broken, f"{page.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)


def test_the_link_checker_sees_links_and_anchors(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A `code` title: here\n\n## Twice\n\n## Twice\n\nSee [it](other.md#x), ![img](a.png) and\n"
                    "[`make demo`](\n../README.md#the-main-job), not `[code](no.md)` nor\n\n```\n[fenced](no.md)\n```\n"
                    "[web](https://example.org)\n")
    assert relative_links(page) == ["other.md#x", "a.png", "../README.md#the-main-job"]
    assert heading_anchors(page) == {"a-code-title-here", "twice", "twice-1"}
