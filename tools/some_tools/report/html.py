"""report.html beside report.md: the same text, tables and figures as one self-contained page that
opens in any browser (nothing fetched: the PNGs are embedded as base64 data URIs, the style is
inline, there is no script).

The Markdown is rendered by the `markdown` package (Python-Markdown, with its `tables` and
`fenced_code` extensions), the renderer report.md is written for, so the two cannot drift apart.
"""
import base64
import html
import re
from pathlib import Path

from some_tools.errors import InputError

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 1200px;
       margin: 2em auto; padding: 0 1.5em; line-height: 1.5; color: #1b1b1b; background: #fff; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f3f3f3; }
td { font-variant-numeric: tabular-nums; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.92em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; white-space: pre-wrap; }
blockquote { border-left: 4px solid #d9822b; margin: 1em 0; padding: 0.2em 1em; background: #fff8ef; }
"""

IMG_SRC = re.compile(r'(<img\b[^>]*?\bsrc=")([^"]+)(")')


def _data_uri(out: Path, name: str) -> str:
    """A PNG of the report directory as a data URI; InputError naming it when it is missing."""
    path = out / html.unescape(name)
    if "/" in name or path.suffix.lower() != ".png":
        raise InputError(f"{out / 'report.md'}: embeds {name}, which is not a PNG of the report directory")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read the figure report.md embeds ({e})") from e
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def write_html(md_path: Path) -> Path:
    """Renders MD_PATH (a report.md) to report.html in the same directory, its images inlined."""
    import markdown
    out = md_path.parent
    text = md_path.read_text(encoding="utf-8")
    body = markdown.markdown(text, extensions=["tables", "fenced_code"], output_format="html")
    body = IMG_SRC.sub(lambda m: m.group(1) + _data_uri(out, m.group(2)) + m.group(3), body)
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), "SoME run report")
    title = html.escape(title.replace("`", ""))
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<link rel=\"icon\" href=\"data:,\">\n"  # no favicon request from a file:// page
            f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
