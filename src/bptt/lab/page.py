"""A self-contained HTML report: figures embedded as base64 PNG data, no external reference, so
the file opens offline in any browser and can be mailed as it is."""

import base64
import html
from pathlib import Path

from .. import files

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
figure { margin: 1rem 0; } img { max-width: 100%; border: 1px solid #ddd; }
figcaption, .reading { color: #444; } table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 0.2rem 0.6rem; text-align: right; }
"""


def image(png_path):
    data = base64.b64encode(Path(png_path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(Path(png_path).stem)}" src="data:image/png;base64,{data}">'


def table(rows):
    """rows: a list of dicts with the same keys."""
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write(path, title, sections, intro=""):
    """sections: [(heading, png path or None, plain-language reading, optional table rows), ...]."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    for heading, png, reading, rows in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if png is not None:
            parts.append(f"<figure>{image(png)}</figure>")
        if reading:
            parts.append(f"<p class='reading'>{html.escape(reading)}</p>")
        if rows:
            parts.append(table(rows))
    parts.append("</body></html>")
    files.write_bytes_atomic(path, "\n".join(parts).encode("utf-8"))
    return Path(path)
