"""The repository needs nothing beside it: a fresh clone's `make test` passes on its own.

Conformance vectors, the design and every document a page links to live in the repository;
code and configuration name no path outside it (`.ci/run` also runs `make test` in a clone in an
empty folder, which catches what a grep cannot).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THIS = Path(__file__).resolve()

# A sibling folder of the checkout (the steering repo's shared/ once was one) or a machine's
# workspace path: both exist on a developer's machine and on no fresh clone.
OUTSIDE = [
    re.compile(r"\.\./shared\b"),
    re.compile(r"(?<![\w.])/work/"),
    re.compile(r"\bshared/conformance\b"),
]
MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in listed.decode().split("\0") if name]


def text_files() -> list[tuple[Path, str]]:
    files = []
    for path in tracked_files():
        if path == THIS or not path.is_file():
            continue
        try:
            files.append((path, path.read_text()))
        except UnicodeDecodeError:
            continue  # binary: no paths to read
    return files


def test_nothing_in_the_repository_names_a_path_outside_it():
    found = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}: {match.group(0)}"
        for path, text in text_files()
        for pattern in OUTSIDE
        for match in pattern.finditer(text)
    ]
    assert found == []


def test_every_relative_link_in_the_docs_reaches_a_file_in_the_repository():
    broken = []
    for path, text in text_files():
        if path.suffix != ".md":
            continue
        for target in MARKDOWN_LINK.findall(text):
            if re.match(r"^[a-z]+:", target):
                continue  # http:, https:, mailto:
            resolved = (path.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{path.relative_to(ROOT)} → {target}")
    assert broken == []


def test_the_grep_finds_what_it_looks_for():
    assert any(pattern.search('Path(BASE_DIR, "../shared/conformance")') for pattern in OUTSIDE)
    assert any(pattern.search("cd /work/main && make") for pattern in OUTSIDE)
    assert not any(pattern.search("tests/conformance/webhooks.json") for pattern in OUTSIDE)
