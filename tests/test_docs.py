"""The API reference is generated from the docstrings and must be current."""

import runpy
from pathlib import Path

DOCS = Path(__file__).parent.parent / "docs"


def test_api_reference_is_up_to_date():
    render = runpy.run_path(str(DOCS / "gen_api.py"))["render"]
    assert (DOCS / "api.md").read_text() == render(), "run: python docs/gen_api.py"


def test_docs_link_to_existing_pages():
    import re

    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([\w./-]+\.(?:md|png))\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
