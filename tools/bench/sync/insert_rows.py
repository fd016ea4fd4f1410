#!/usr/bin/env python3
"""The way many users load crawl results today: one INSERT and one COMMIT per row, with
pymysql. For each page, in crawl order (URL order, as webspool writes them): INSERT the
page, COMMIT, then INSERT each of its links, COMMIT after each.

The rows come from a database webspool synced (the same rows), read into memory before
the clock starts; only the INSERT/COMMIT loop is timed. The target tables must exist
(same DDL as webspool's).

Usage: insert_rows.py --source DB --target DB [--pages N] [--host H --port P --user U]
  --pages N: only the first N pages (and their links); 0 = all.
Prints one JSON line: pages, links, rows, seconds (the loop), setup_seconds.
"""

import argparse
import json
import time

import pymysql


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3306)
    p.add_argument("--user", default="root")
    p.add_argument("--password", default="")
    p.add_argument("--source", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--pages", type=int, default=0)
    a = p.parse_args()
    t0 = time.perf_counter()

    def connect(db):
        return pymysql.connect(
            host=a.host,
            port=a.port,
            user=a.user,
            password=a.password,
            database=db,
            charset="utf8mb4",
            autocommit=False,
            init_command="SET time_zone = '+00:00'",
        )

    src = connect(a.source)
    with src.cursor() as cur:
        cur.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'pages' ORDER BY ordinal_position",
            (a.source,),
        )
        page_cols = [r[0] for r in cur.fetchall()]
        cur.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'links' ORDER BY ordinal_position",
            (a.source,),
        )
        link_cols = [r[0] for r in cur.fetchall()]
        limit = f" LIMIT {a.pages}" if a.pages > 0 else ""
        cur.execute(
            "SELECT {} FROM pages ORDER BY url{}".format(
                ", ".join(f"`{c}`" for c in page_cols), limit
            )
        )
        pages = cur.fetchall()
        if a.pages > 0:
            cur.execute(
                "SELECT {} FROM links JOIN (SELECT url_hash, url FROM pages ORDER BY url{}) p "
                "ON links.page_hash = p.url_hash ORDER BY p.url, position".format(
                    ", ".join(f"links.`{c}`" for c in link_cols), limit
                )
            )
        else:
            cur.execute(
                "SELECT {} FROM links ORDER BY page_hash, position".format(
                    ", ".join(f"`{c}`" for c in link_cols)
                )
            )  # grouped by page below; inserted in page order
        links = {}
        for row in cur.fetchall():
            links.setdefault(row[0], []).append(row)
    src.close()

    insert_page = "INSERT INTO pages ({}) VALUES ({})".format(
        ", ".join(f"`{c}`" for c in page_cols), ", ".join(["%s"] * len(page_cols))
    )
    insert_link = "INSERT INTO links ({}) VALUES ({})".format(
        ", ".join(f"`{c}`" for c in link_cols), ", ".join(["%s"] * len(link_cols))
    )
    conn = connect(a.target)
    cur = conn.cursor()
    setup = time.perf_counter() - t0

    start = time.perf_counter()
    n_links = 0
    for page in pages:
        cur.execute(insert_page, page)
        conn.commit()
        for link in links.get(page[0], ()):
            cur.execute(insert_link, link)
            conn.commit()
            n_links += 1
    seconds = time.perf_counter() - start
    conn.close()
    print(
        json.dumps(
            {
                "pages": len(pages),
                "links": n_links,
                "rows": len(pages) + n_links,
                "seconds": round(seconds, 3),
                "setup_seconds": round(setup, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
