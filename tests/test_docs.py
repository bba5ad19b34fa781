"""The documentation site: every page is in its nav, and the pages' links resolve.

The site itself (mkdocs.yml, the API reference rendered from the docstrings) is built by
``mkdocs build --strict`` in .ci/run, where a warning fails the build.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"


def test_every_page_is_in_the_site_nav():
    yaml = pytest.importorskip("yaml")

    def pages(nav):
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            yield from pages(value) if isinstance(value, list) else [value]

    nav = list(pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]))
    assert sorted(nav) == sorted(page.name for page in DOCS.glob("*.md"))


def test_docs_link_to_existing_pages():
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([\w./-]+\.(?:md|png))\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
