"""The conditioning header: `genre: country` / `title: ...` lines before a song, shared by training and generation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def format_header(meta: Mapping[str, str | None], fields: Sequence[str]) -> str:
    """Header lines for `fields` in the given order, skipping empty values, then a blank line ("" if none).

    >>> format_header({"genre": "country", "title": "Dust Road"}, ["genre", "title"])
    'genre: country\\ntitle: Dust Road\\n\\n'
    """
    lines = [f"{field}: {' '.join(str(meta[field]).split())}" for field in fields if meta.get(field)]
    return "\n".join(lines) + "\n\n" if lines else ""


def with_header(text: str, meta: Mapping[str, str | None], fields: Sequence[str]) -> str:
    """A song (or a generation prompt) preceded by its conditioning header."""
    return format_header(meta, fields) + text
