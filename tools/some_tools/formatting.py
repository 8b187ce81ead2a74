"""Number formatting shared by the Markdown reports."""


def fmt_or_na(x, spec: str = ".3f") -> str:
    """`x` formatted with `spec`, or "n/a" for a value that does not exist (None)."""
    return "n/a" if x is None else format(x, spec)
