#!/usr/bin/env python3
"""Prints the CREATE TABLE statements of the given tables exactly as webspool's
src/sync/schema.rs has them (its MIGRATIONS string literals), each ending with `;`.

Usage: ddl_from_schema.py path/to/schema.rs pages links
"""

import re
import sys


def main():
    path, tables = sys.argv[1], sys.argv[2:]
    text = open(path, encoding="utf-8").read()
    found = {}
    for m in re.finditer(r'"(CREATE TABLE IF NOT EXISTS (\w+) \((?:[^"\\]|\\.)*?)"', text, re.S):
        found.setdefault(m.group(2), m.group(1))
    missing = [t for t in tables if t not in found]
    if missing:
        sys.exit(f"ddl_from_schema: no CREATE TABLE for {', '.join(missing)} in {path}")
    for t in tables:
        print(found[t].strip() + ";")


if __name__ == "__main__":
    main()
