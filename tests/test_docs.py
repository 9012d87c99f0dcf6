"""The docs site, llms.txt and the LICENSE: present, consistent, and shipped.

``./run test`` builds the site with ``mkdocs build --strict`` before pytest;
these tests check what that build cannot: every page is in the navigation,
llms.txt links only to pages that exist and is published in the site, the
built site fetches nothing from elsewhere, and the wheel carries the LICENSE
and the ``mpp`` console script.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def nav_pages() -> set[str]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, str):
            pages.add(node)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)

    walk(config["nav"])
    return pages


def test_every_page_is_in_the_navigation_and_every_entry_exists() -> None:
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert nav_pages() == on_disk


def test_llms_txt_links_to_pages_that_exist() -> None:
    text = (ROOT / "llms.txt").read_text()
    assert text.startswith("# mpp-client\n\n> ")
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert len(links) >= 15
    for link in links:
        assert (ROOT / link).is_file(), link
    # Every guide page is offered to agents.
    for page in ("cli.md", "policy.md", "flow.md", "ledger.md", "methods.md", "keys.md"):
        assert f"docs/{page}" in links


def test_the_license_is_mit_as_pyproject_says() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text


def test_the_site_builds_with_llms_txt_and_no_outside_assets(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    published = (site / "llms.txt").read_text()
    assert "](cli/)" in published and "](api/client/)" in published and "docs/" not in published
    for link in re.findall(r"\]\(([^)]+)\)", published):
        assert (site / link / "index.html").is_file(), link
    # The API reference documents the new public names, from their docstrings.
    client = (site / "api" / "client" / "index.html").read_text()
    for name in ("mpp_client.Client.quote", "mpp_client.Client.discover", "QuoteResult"):
        assert name in client
    for page in site.rglob("*.html"):
        html = page.read_text()
        assert "fonts.googleapis.com" not in html and "fonts.gstatic.com" not in html, page


def test_the_wheel_ships_the_license_and_the_console_script(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (license_file,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert archive.read(license_file) == (ROOT / "LICENSE").read_bytes()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "mpp = mpp_client.cli:main" in archive.read(entry_points).decode()
        assert "mpp_client/cli/_dashboard.py" in names
