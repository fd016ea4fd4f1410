#!/usr/bin/env python3
"""Replaces one `## ` section of a Markdown file (from its heading to the next `## `
heading outside code fences, or the end) with the contents of another file; appends it
when the file has no such section, and creates the file (with a `# Benchmarks` title)
when it does not exist. Other sections are left byte for byte as they are.

Usage: update_section.py BENCHMARKS.md "## Sync (tools/bench-sync)" SECTION_FILE
"""

import os
import sys
import tempfile


def main():
    path, heading, section_file = sys.argv[1:4]
    section = open(section_file, encoding="utf-8").read().rstrip("\n") + "\n"
    if not section.startswith(heading):
        sys.exit("update_section: the section must start with its heading")
    try:
        text = open(path, encoding="utf-8").read()
    except FileNotFoundError:
        text = "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = end = None
    fence = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if fence:
            continue
        if start is None and line.rstrip("\n") == heading:
            start = i
        elif start is not None and line.startswith("## "):
            end = i
            break
    if start is None:
        body = text.rstrip("\n") + "\n\n" + section
    else:
        end = len(lines) if end is None else end
        after = "".join(lines[end:])
        body = "".join(lines[:start]) + section + ("\n" + after if after else "")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".benchmarks.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(body)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
