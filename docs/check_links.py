"""
Check the internal links of the built site: every relative ``href``/``src`` of every HTML page points to a file that
exists, and every ``#anchor`` to an ``id`` (or ``name``) in that file. External links (``http:``, ``mailto:``, ...)
are not followed (CI has no network).

    python docs/check_links.py docs/_build/html     # exit 1 and one line per broken link
"""

import argparse
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

LINK_ATTRIBUTES = {"a": "href", "link": "href", "img": "src", "script": "src"}


class Page(HTMLParser):
    """The links and the anchors (ids and names) of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.anchors: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for key in ("id", "name"):
            if values.get(key):
                self.anchors.add(str(values[key]))
        link = values.get(LINK_ATTRIBUTES.get(tag, ""))
        if link:
            self.links.append(link)


def read(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def broken_links(site: Path) -> list[str]:
    """One line per internal link of ``site`` whose file or anchor does not exist."""
    pages: dict[Path, Page] = {}

    def page_of(path: Path) -> Page:
        if path not in pages:
            pages[path] = read(path)
        return pages[path]

    broken = []
    for html in sorted(site.rglob("*.html")):
        for link in page_of(html).links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith("javascript:"):
                continue
            target = (html.parent / unquote(parts.path)).resolve() if parts.path else html.resolve()
            if target.is_dir():
                target = target / "index.html"
            where = f"{html.relative_to(site)}: {link}"
            if not target.is_file():
                broken.append(f"{where} (no such file)")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in page_of(target).anchors:
                broken.append(f"{where} (no anchor #{parts.fragment} in {target.relative_to(site.resolve())})")
    return broken


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("site", type=Path, help="the built HTML folder (sphinx-build -b html docs SITE)")
    args = parser.parse_args()
    broken = broken_links(args.site)
    for line in broken:
        print(line)
    print(f"{len(broken)} broken internal links in {args.site}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
