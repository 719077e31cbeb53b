"""requirements.lock pins what the tests run against (`make venv` installs it as constraints).

Every range in requirements*.txt must have a pin in the lock that the range allows, so a package
added to requirements.txt without `make lock` fails here instead of installing whatever is newest
on a fresh clone; and the environment running the suite has the locked versions.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def requirement_lines(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            lines += requirement_lines(path.parent / line[3:].strip())
        else:
            lines.append(line)
    return lines


def locked() -> dict[str, list[Requirement]]:
    """Name → its pins (a universal lock may pin a package twice, under exclusive markers)."""
    pins: dict[str, list[Requirement]] = {}
    for line in requirement_lines(ROOT / "requirements.lock"):
        requirement = Requirement(line)
        pins.setdefault(canonicalize_name(requirement.name), []).append(requirement)
    return pins


def applicable(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate()


def test_the_lock_pins_every_requirement_within_its_range():
    pins = locked()
    assert all(str(pin.specifier).startswith("==") for group in pins.values() for pin in group)
    problems = []
    for line in requirement_lines(ROOT / "requirements-dev.txt"):
        wanted = Requirement(line)
        here = [pin for pin in pins.get(canonicalize_name(wanted.name), []) if applicable(pin)]
        if not here:
            problems.append(f"{wanted.name}: not in requirements.lock (run `make lock`)")
            continue
        version = next(iter(here[0].specifier)).version
        if not wanted.specifier.contains(version, prereleases=True):
            problems.append(f"{wanted.name}: locked {version} is outside {wanted.specifier} (run `make lock`)")
    assert problems == []


def test_the_suite_runs_on_the_locked_versions():
    mismatched = []
    for name, group in locked().items():
        for pin in filter(applicable, group):
            version = next(iter(pin.specifier)).version
            try:
                installed = metadata.version(name)
            except metadata.PackageNotFoundError:
                mismatched.append(f"{name}: locked {version}, not installed")
                continue
            if installed != version:
                mismatched.append(f"{name}: locked {version}, installed {installed}")
    assert mismatched == [], "the environment is not the locked one: `make lock` or a fresh `make venv`"
