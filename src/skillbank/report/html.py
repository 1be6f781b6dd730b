"""A static, self-contained HTML report: one file plus PNGs next to it, no server needed.

``write_report(out_dir, title, sections)`` writes ``out_dir/report.html``.  The page has a
small inline stylesheet, no JavaScript and no external URLs; images are referenced by
paths relative to ``out_dir`` so the directory can be copied, zipped or opened from disk
(``file://``) as is.  Every piece of caller text is escaped with ``html.escape``.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

__all__ = ["Section", "format_cell", "write_report"]

REPORT_NAME = "report.html"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
nav ol { padding-left: 1.5em; }
p { white-space: pre-line; }
table { border-collapse: collapse; margin: 1em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .3em .7em; }
th { background: #f0f0f0; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1em 0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #666; }
""".strip()


@dataclass
class Section:
    """One report section: a heading, optional text, an optional table, optional images.

    ``text`` is plain text (escaped; blank lines separate paragraphs).  ``table`` is
    ``(header, rows)``; numbers render with 3 decimals (see :func:`format_cell`).
    ``images`` are PNG (or other image) file names relative to the report directory.
    """

    title: str
    text: str = ""
    table: tuple[Sequence[str], Sequence[Sequence[Any]]] | None = None
    images: list[str] = field(default_factory=list)


def format_cell(value: Any) -> tuple[str, bool]:
    """Text for one table cell and whether it is numeric.

    Reals (``float``, numpy floating) render with 3 decimals, ``nan``/``inf`` as such;
    integers (``int``, numpy integer) render exactly, since counts such as ``n`` are not
    measurements; ``None`` renders empty; everything else through ``str``.
    """
    if value is None:
        return "", False
    if isinstance(value, bool):
        return str(value), False
    if isinstance(value, numbers.Integral):
        return str(int(value)), True
    if isinstance(value, numbers.Real):
        v = float(value)
        return ("nan" if math.isnan(v) else f"{v:.3f}"), True
    return str(value), False


def _image_src(name: str) -> str:
    """URL-encoded relative src for ``name``; rejects absolute paths, ``..`` and URLs."""
    p = PurePosixPath(name.replace("\\", "/"))
    if not name or p.is_absolute() or ".." in p.parts or ":" in name:
        raise ValueError(f"image must be a path relative to the report directory: {name!r}")
    return quote(p.as_posix())


def _render_text(text: str) -> list[str]:
    paras = [p.strip("\n") for p in text.split("\n\n")]
    return [f"<p>{html.escape(p)}</p>" for p in paras if p.strip()]


def _render_table(table: tuple[Sequence[str], Sequence[Sequence[Any]]]) -> list[str]:
    header, rows = table
    out = ["<table>", "<thead><tr>"
           + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr></thead>",
           "<tbody>"]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"table row has {len(row)} cells, header has {len(header)}")
        cells = []
        for value in row:
            text, numeric = format_cell(value)
            cls = ' class="num"' if numeric else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out += ["</tbody>", "</table>"]
    return out


def _render_image(name: str, section_title: str) -> list[str]:
    src = html.escape(_image_src(name), quote=True)
    alt = html.escape(f"{section_title}: {PurePosixPath(name).stem}", quote=True)
    return ["<figure>", f'<img src="{src}" alt="{alt}">',
            f"<figcaption>{html.escape(name)}</figcaption>", "</figure>"]


def render_report(title: str, sections: Sequence[Section]) -> str:
    """The report page as a string (what :func:`write_report` writes)."""
    t = html.escape(title)
    lines = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{t}</title>", f"<style>\n{_CSS}\n</style>", "</head>", "<body>",
             f"<h1>{t}</h1>"]
    if len(sections) > 1:
        lines.append("<nav><ol>")
        lines += [f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>'
                  for i, s in enumerate(sections, start=1)]
        lines.append("</ol></nav>")
    for i, s in enumerate(sections, start=1):
        lines += [f'<section id="s{i}">', f"<h2>{html.escape(s.title)}</h2>"]
        lines += _render_text(s.text)
        if s.table is not None:
            lines += _render_table(s.table)
        for name in s.images:
            lines += _render_image(name, s.title)
        lines.append("</section>")
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines)


def write_report(out_dir: Path, title: str, sections: list[Section],
                 check_images: bool = True) -> Path:
    """Write ``out_dir/report.html`` and return its path.

    Images are referenced relative to ``out_dir`` (``<img src="heatmap.png" ...>``), so write
    the PNGs into ``out_dir`` first; with ``check_images`` (default) a missing image raises
    ``FileNotFoundError`` instead of producing a report with a broken picture.
    """
    out_dir = Path(out_dir)
    page = render_report(title, sections)  # validates image paths first
    if check_images:
        missing = [n for s in sections for n in s.images if not (out_dir / n).is_file()]
        if missing:
            raise FileNotFoundError(f"images missing from {out_dir}: {missing}")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REPORT_NAME
    path.write_text(page, encoding="utf-8")
    return path
