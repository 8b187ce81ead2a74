"""The documentation a reader follows: every relative link of every Markdown file in the
repository resolves (the file or folder exists; an anchor names a heading of its page, by
GitHub's rule), README.md stays a five-minute read (at most 300 lines), and docs/config.md is
exactly what `some config --markdown` generates from the config schema.

    check_docs.py SOURCE_DIR [SOME_BINARY]

Prints every problem as FILE:LINE: what, and exits 1 if there is one."""
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

SKIP_DIRS = {".git", ".venv", ".gpu-pack", "build", "runs", "data", "checkpoints", "node_modules"}
README_MAX_LINES = 300
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")


def markdown_files(root: Path):
    for path in sorted(root.rglob("*.md")):
        rel = path.relative_to(root).parts
        if not any(p in SKIP_DIRS or p.startswith(("build", ".")) for p in rel[:-1]):
            yield path


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield n, line


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, inline markup and punctuation dropped (letters,
    digits, '-', '_' and spaces kept), spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set:
    seen: dict = {}
    out = set()
    for _, line in prose_lines(path.read_text()):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        s = slug(m.group(1))
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def check_links(root: Path) -> list:
    problems = []
    cache: dict = {}
    for md in markdown_files(root):
        # Fenced blocks blanked and inline code removed, line breaks kept: a link's text may wrap.
        prose = {n: INLINE_CODE.sub("", line) for n, line in prose_lines(md.read_text())}
        text = "\n".join(prose.get(n, "") for n in range(1, len(md.read_text().splitlines()) + 1))
        for m in LINK.finditer(text):
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            where = f"{md.relative_to(root)}:{text.count(chr(10), 0, m.start(1)) + 1}"
            file_part, _, anchor = target.partition("#")
            dest = (md.parent / file_part).resolve() if file_part else md.resolve()
            if file_part and not dest.exists():
                problems.append(f"{where}: link to {target}: {file_part} does not exist")
                continue
            if dest != root and root not in dest.parents:
                problems.append(f"{where}: link to {target} leaves the repository")
                continue
            if anchor and dest.suffix == ".md":
                if dest not in cache:
                    cache[dest] = anchors(dest)
                if anchor not in cache[dest]:
                    problems.append(f"{where}: link to {target}: no heading '#{anchor}' in "
                                    f"{dest.relative_to(root)}")
    return problems


def check_readme(root: Path) -> list:
    n = len((root / "README.md").read_text().splitlines())
    if n > README_MAX_LINES:
        return [f"README.md: {n} lines, at most {README_MAX_LINES} (details belong in a page under docs/)"]
    return []


def check_config_reference(root: Path, some: str) -> list:
    generated = subprocess.run([some, "config", "--markdown"], check=True, capture_output=True,
                               text=True).stdout
    page = (root / "docs" / "config.md").read_text()
    if page == generated:
        return []
    a, b = page.splitlines(), generated.splitlines()
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return [f"docs/config.md:{first + 1}: differs from `some config --markdown` "
            f"(page: {a[first] if first < len(a) else '<end>'!r}; generated: "
            f"{b[first] if first < len(b) else '<end>'!r}); regenerate it with "
            f"build/bin/some config --markdown > docs/config.md"]


def self_check() -> None:
    """The anchor rule on headings of the kinds these pages use (GitHub's own anchors)."""
    cases = {"Part `gap`: what closes the gap": "part-gap-what-closes-the-gap",
             "2. The SoME layer": "2-the-some-layer",
             "3. Knowledge Gravity — the key update": "3-knowledge-gravity--the-key-update",
             "Checkpoints, resume, preemption": "checkpoints-resume-preemption",
             "Measured on this machine (2 cores, no GPU)": "measured-on-this-machine-2-cores-no-gpu",
             "[docs/x.md](docs/x.md) page": "docsxmd-page"}
    for heading, want in cases.items():
        assert slug(heading) == want, f"slug({heading!r}) = {slug(heading)!r}, expected {want!r}"


def main() -> int:
    self_check()
    root = Path(sys.argv[1]).resolve()
    problems = check_links(root) + check_readme(root)
    if len(sys.argv) > 2:
        problems += check_config_reference(root, sys.argv[2])
    for p in problems:
        print(p)
    if problems:
        print(f"FAIL: {len(problems)} documentation problem(s)")
        return 1
    print(f"PASS: links of {sum(1 for _ in markdown_files(root))} Markdown files resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
