"""A clone on its own runs every test: nothing reads files from beside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
# A path climbing out of the repository to the folder beside it: a relative one, a joined name, or a
# `parents[n].parent` walk. Built from pieces so this guard does not match itself.
_BESIDE = "sha" + "red"
OUTSIDE = re.compile(r"(\.\./" + _BESIDE + r"|/\s*[\"']" + _BESIDE + r"[\"']|parents\[\d+\]\.parent)")


def test_no_test_or_source_file_reads_outside_the_repository() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("src", "tests", "bench", "scripts")
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and path.suffix in {".py", ""}
        if OUTSIDE.search(path.read_text(errors="ignore"))
    ]
    assert offenders == []


def test_the_stripe_fixtures_carry_their_license() -> None:
    fixtures = ROOT / "tests" / "providers" / "stripe" / "fixtures"
    assert (fixtures / "fixtures3.json").is_file()
    assert "MIT License" in (fixtures / "LICENSE").read_text()
