"""mkdocs hooks: publish the repository's llms.txt at the root of the built site.

One file, kept at the repository root where agents reading the source find
it, and copied into the site on every build so agents reading the docs do
too. Its links name the Markdown sources (``docs/cli.md``); in the site they
become the pages built from them (``cli/``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_LINK = re.compile(r"\]\(docs/([^)]*?)\.md\)")


def site_link(match: re.Match[str]) -> str:
    page = match.group(1)
    if page == "index":
        return "](./)"
    if page.endswith("/index"):
        return f"]({page[: -len('index')]})"
    return f"]({page}/)"


def on_post_build(config: Any, **kwargs: Any) -> None:
    text = (ROOT / "llms.txt").read_text(encoding="utf-8")
    (Path(config["site_dir"]) / "llms.txt").write_text(_LINK.sub(site_link, text), encoding="utf-8")
