#!/usr/bin/env python3
"""Exports the `pages` and `links` tables of a database webspool synced into TSV files
in the format of `SELECT ... INTO OUTFILE` with the default FIELDS/LINES options:
tab-separated, one row a line, NULL as \\N, and backslash, tab, newline and NUL
escaped with a backslash. That format is binary-safe: `LOAD DATA ... CHARACTER SET
binary FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'` reads
back the exact bytes (bodies included).

Done on the client side (pymysql, every value as the raw bytes the server sends), so it
works whatever the server's secure_file_priv and wherever its files are.

Usage: export_tsv.py --host H --port P --user U [--password PW] --db DB --out DIR
Writes DIR/pages.tsv, DIR/links.tsv and DIR/columns.json (the column order of each file).
"""

import argparse
import json
import os
import sys

import pymysql
import pymysql.converters
import pymysql.cursors

# pymysql's conversions with the decoders (keyed by field type, an int) left out.
ENCODERS_ONLY = {
    k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)
}


def escape(value):
    if value is None:
        return b"\\N"
    return (
        value.replace(b"\\", b"\\\\")
        .replace(b"\t", b"\\t")
        .replace(b"\n", b"\\n")
        .replace(b"\0", b"\\0")
    )


def columns(conn, db, table):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (db, table),
        )
        return [r[0].decode() if isinstance(r[0], bytes) else r[0] for r in cur.fetchall()]


# The order webspool writes rows in: its sync queue follows the crawl, i.e. the URL list,
# which is in URL order; the primary keys (hashes) come in random order. Sorting the files
# by primary key instead would let InnoDB append to its B-trees, an advantage webspool
# does not get.
QUERIES = {
    "pages": "SELECT {cols} FROM pages ORDER BY url",
    "links": "SELECT {cols} FROM links JOIN pages ON links.page_hash = pages.url_hash "
    "ORDER BY pages.url, links.position",
}


def export(conn, table, cols, path):
    rows = 0
    with open(path, "wb", buffering=8 << 20) as out:
        cur = conn.cursor(pymysql.cursors.SSCursor)
        cur.execute(
            QUERIES[table].format(cols=", ".join("`%s`.`%s`" % (table, c) for c in cols))
        )
        for row in cur:
            out.write(b"\t".join(escape(v) for v in row))
            out.write(b"\n")
            rows += 1
        cur.close()
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3306)
    p.add_argument("--user", default="root")
    p.add_argument("--password", default="")
    p.add_argument("--db", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    # No decoders and use_unicode=False: every value comes back as the server's raw
    # bytes (text protocol), exactly what LOAD DATA reads back.
    conn = pymysql.connect(
        host=a.host,
        port=a.port,
        user=a.user,
        password=a.password,
        database=a.db,
        charset="utf8mb4",
        use_unicode=False,
        conv=ENCODERS_ONLY,
    )
    # The session in UTC, like webspool's, so DATETIME values are not shifted.
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
    os.makedirs(a.out, exist_ok=True)
    result = {}
    for table in ("pages", "links"):
        cols = columns(conn, a.db, table)
        if not cols:
            sys.exit(f"export_tsv: no table {a.db}.{table}")
        n = export(conn, table, cols, os.path.join(a.out, f"{table}.tsv"))
        result[table] = {"columns": cols, "rows": n}
    conn.close()
    with open(os.path.join(a.out, "columns.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({t: r["rows"] for t, r in result.items()}))


if __name__ == "__main__":
    main()
