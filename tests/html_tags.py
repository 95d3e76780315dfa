"""The start tags of a page, to ask what it holds: the report's and kx serve's tests read pages with it."""

from __future__ import annotations

from html.parser import HTMLParser


class Tags(HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def having(self, tag: str, cls: str | None = None) -> list[dict]:
        """The attributes of every ``tag``, of those with class ``cls`` when given."""
        return [a for t, a in self.tags if t == tag and (cls is None or cls in (a.get("class") or "").split())]

    @property
    def handlers(self) -> list[str]:
        """Every event-handler attribute (``onclick``, ``onerror``, ...) on any tag."""
        return [name for _, attrs in self.tags for name in attrs if name.startswith("on")]
