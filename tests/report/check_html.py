"""Checks report.html of a `some report` directory.

    check_html.py REPORT_DIR                       # the page itself
    check_html.py REPORT_DIR --browser CHROMIUM    # ... and rendered by headless Chromium

The page: one self-contained HTML file (no reference to any other file or URL: every image is a
data URI), its images exactly the PNGs report.md embeds and byte for byte those files, and the
text of report.md there (headings, the routing table's numbers, the eval samples).

In the browser (--browser): (1) the page with a probe script appended (a copy; report.html has no
script of its own) records into the DOM how many images decoded, read back with --dump-dom;
(2) report.html itself is screenshotted with console logging on: no console message at all (a
page without scripts has nothing to say), and a PNG of exactly the window size.
"""
import base64
import re
import struct
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

WINDOW = (1280, 2000)


def fail(msg: str):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.refs, self.scripts, self.text = [], [], 0, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if key in a and tag != "img":
                self.refs.append(a[key])

    def handle_data(self, data):
        self.text.append(data)


def png_size(data: bytes) -> tuple[int, int]:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        fail("not a PNG")
    return struct.unpack(">II", data[16:24])


def check_page(report: Path) -> int:
    html_path = report / "report.html"
    if not html_path.is_file():
        fail(f"{html_path} was not written")
    md = (report / "report.md").read_text(encoding="utf-8")
    page = Page()
    page.feed(html_path.read_text(encoding="utf-8"))
    if page.scripts:
        fail("report.html has a script")
    for ref in page.refs:   # the favicon placeholder is the only link, and it is inline
        if not ref.startswith("data:"):
            fail(f"report.html refers to {ref!r}: not self-contained")
    embedded = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    if len(page.imgs) != len(embedded) or not embedded:
        fail(f"report.html has {len(page.imgs)} images, report.md embeds {len(embedded)}")
    for src, name in zip(page.imgs, embedded):
        prefix = "data:image/png;base64,"
        if not src.startswith(prefix):
            fail(f"image {name} is not a PNG data URI: {src[:40]!r}")
        if base64.b64decode(src[len(prefix):]) != (report / name).read_bytes():
            fail(f"the data URI of {name} is not that file")
    text = "".join(page.text)
    for heading in re.findall(r"^#+ (.+)$", md, flags=re.M):
        plain = heading.replace("`", "")
        if plain not in text:
            fail(f"heading {plain!r} of report.md is not in report.html")
    table = [line for line in md.splitlines() if re.match(r"^\| \d+ \|", line)]
    for row in table:   # the routing table rendered as a table: every cell is in the page
        for cell in row.strip("|").split("|"):
            if cell.strip() not in text:
                fail(f"table cell {cell.strip()!r} of report.md is not in report.html")
    if "<table>" not in html_path.read_text(encoding="utf-8") and table:
        fail("the routing table was not rendered as an HTML table")
    print(f"check_html: report.html self-contained, {len(page.imgs)} images, {len(table)} table rows")
    return len(page.imgs)


def chromium(binary: str, *args: str) -> subprocess.CompletedProcess:
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start; --disable-dev-shm-usage:
    # containers often have a tiny /dev/shm, which crashes the renderer.
    cmd = [binary, "--headless", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run",
           f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def check_browser(report: Path, binary: str, n_images: int):
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.html"
        page = (report / "report.html").read_text(encoding="utf-8")
        script = ("<script>window.addEventListener('load', () => { const imgs = [...document.images]; "
                  "const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length; "
                  "document.body.setAttribute('data-probe', ok + '/' + imgs.length); });</script>")
        probe.write_text(page.replace("</body>", script + "</body>"), encoding="utf-8")
        r = chromium(binary, "--dump-dom", probe.as_uri())
        m = re.search(r'data-probe="(\d+)/(\d+)"', r.stdout)
        if m is None:
            fail(f"the probe did not run (chromium exit {r.returncode}): {r.stderr[-1500:]}")
        if m.group(1) != m.group(2) or int(m.group(2)) != n_images:
            fail(f"{m.group(1)} of {m.group(2)} images decoded in the browser (report.md embeds {n_images})")

        shot = Path(tmp) / "shot.png"
        r = chromium(binary, "--enable-logging=stderr", "--v=0", f"--screenshot={shot}",
                     (report / "report.html").as_uri())
        console = [line for line in r.stderr.splitlines() if ":CONSOLE" in line]
        if console:
            fail("console messages while rendering report.html:\n" + "\n".join(console))
        if r.returncode != 0 or not shot.is_file():
            fail(f"no screenshot (chromium exit {r.returncode}): {r.stderr[-1500:]}")
        data = shot.read_bytes()
        if png_size(data) != WINDOW:
            fail(f"screenshot is {png_size(data)}, expected the window size {WINDOW}")
        # A blank page compresses to almost nothing: the figures and text must have been painted.
        if len(data) < 20_000:
            fail(f"screenshot is only {len(data)} bytes: nothing rendered?")
        print(f"check_html: rendered in Chromium, {m.group(1)} images decoded, no console messages, "
              f"screenshot {WINDOW[0]}x{WINDOW[1]} ({len(data)} bytes)")


def main():
    report = Path(sys.argv[1])
    n = check_page(report)
    if len(sys.argv) > 3 and sys.argv[2] == "--browser":
        check_browser(report, sys.argv[3], n)


if __name__ == "__main__":
    main()
