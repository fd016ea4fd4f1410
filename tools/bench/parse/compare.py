#!/usr/bin/env python3
"""tools/bench-parse helper: compares webspool's annotations (JSON lines from
bench-parse-annotations) with the Python peer's output (bs4_extract.py), page by page,
matched by URL. Prints totals, agreement counts, a sample of SAMPLE pages and a few
differences, as Markdown.

    compare.py WEBSPOOL.jsonl PYTHON.jsonl [SAMPLE]
"""

import json
import sys
from urllib.parse import unquote, urlsplit, urlunsplit


def load(path):
    pages = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            pages[rec["url"]] = rec
    return pages


def norm(url):
    """Undoes the spelling differences between WHATWG URL parsing (webspool) and
    urllib.parse.urljoin (Python): percent-encoding, and `https://host` vs `https://host/`."""
    parts = urlsplit(unquote(url))
    return urlunsplit(parts._replace(path=parts.path or "/"))


def short(s, n=48):
    if s is None:
        return "(none)"
    s = s.replace("|", "\\|")
    return s if len(s) <= n else s[: n - 1] + "…"


def main():
    ws, py = load(sys.argv[1]), load(sys.argv[2])
    sample = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    common = sorted(set(ws) & set(py))
    n = len(common)
    agree = {
        k: 0
        for k in ("title", "description", "canonical", "link_count", "link_urls", "link_texts", "link_norm", "words_1pct")
    }
    sums = {"ws_links": 0, "py_links": 0, "ws_words": 0, "py_words": 0, "ws_dropped": 0, "capped": 0}
    diffs = {k: [] for k in agree}
    for url in common:
        w, p = ws[url], py[url]
        wl = [(l["url"], l["text"]) for l in w["links"]]
        pl = [(l["url"], l["text"]) for l in p["links"]]
        dropped = w.get("links_dropped", 0)
        checks = {
            "title": w["title"] == p["title"],
            "description": w["description"] == p["description"],
            "canonical": w["canonical"] == p["canonical"],
            # webspool keeps at most MAX_LINKS links a page and counts the rest.
            "link_count": len(wl) + dropped == len(pl),
            "link_urls": [u for u, _ in wl] == [u for u, _ in pl],
            "link_texts": wl == pl,
            "link_norm": dropped > 0 or {norm(u) for u, _ in wl} == {norm(u) for u, _ in pl},
            "words_1pct": abs(w["word_count"] - p["word_count"]) <= 0.01 * max(p["word_count"], 1),
        }
        for k, ok in checks.items():
            if ok:
                agree[k] += 1
            elif len(diffs[k]) < 2:
                diffs[k].append(url)
        sums["ws_links"] += len(wl)
        sums["ws_dropped"] += dropped
        sums["capped"] += dropped > 0
        sums["py_links"] += len(pl)
        sums["ws_words"] += w["word_count"]
        sums["py_words"] += p["word_count"]

    print(f"- pages: webspool {len(ws)}, Python {len(py)}, matched by URL {n}")
    print(
        f"- links in total: webspool {sums['ws_links']} kept + {sums['ws_dropped']} counted beyond its cap"
        f" of 10,000 a page ({sums['capped']} page(s)), Python {sums['py_links']}"
    )
    print(f"- visible words in total: webspool {sums['ws_words']}, Python {sums['py_words']}")
    labels = {
        "title": "same title",
        "description": "same meta description",
        "canonical": "same canonical",
        "link_count": "same number of links",
        "link_urls": "same link URLs, same order",
        "link_texts": "same link URLs and anchor texts",
        "link_norm": "same set of link URLs after undoing percent-encoding differences",
        "words_1pct": "word count within 1 %",
    }
    print("- pages agreeing: " + "; ".join(f"{labels[k]} {agree[k]}/{n}" for k in agree))
    print()
    if n:
        picks = [common[i * (n - 1) // max(sample - 1, 1)] for i in range(min(sample, n))]
        print("| page | title (webspool) | title (Python) | links ws / py | words ws / py |")
        print("|---|---|---|---|---|")
        for url in picks:
            w, p = ws[url], py[url]
            path = url.split("/", 3)[-1]
            print(
                f"| {short(path, 40)} | {short(w['title'])} | {short(p['title'])} "
                f"| {len(w['links'])} / {len(p['links'])} | {w['word_count']} / {p['word_count']} |"
            )
        print()
    shown = False
    for k, urls in diffs.items():
        for url in urls:
            if not shown:
                print("Examples of disagreement:")
                print()
                shown = True
            w, p = ws[url], py[url]
            path = url.split("/", 3)[-1]
            if k in ("link_count", "link_urls", "link_texts", "link_norm"):
                wl = [(l["url"], l["text"]) for l in w["links"]]
                pl = [(l["url"], l["text"]) for l in p["links"]]
                only_w = [x for x in wl if x not in pl][:2]
                only_p = [x for x in pl if x not in wl][:2]
                detail = f"only webspool {only_w}; only Python {only_p}"
                if not only_w and not only_p:
                    detail = "same links, different order or duplicates"
            elif k == "words_1pct":
                detail = f"webspool {w['word_count']}, Python {p['word_count']}"
            else:
                detail = f"webspool {w[k]!r}, Python {p[k]!r}"
            print(f"- {labels[k]}: `{path}`: {short(detail, 300)}")
    if shown:
        print()


if __name__ == "__main__":
    main()
