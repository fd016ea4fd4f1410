#!/usr/bin/env python3
"""The Python peer for tools/bench-parse: the same extraction webspool's parse stage does,
written the way a typical user writes it, single process, over pages read from disk.

For each page: title, meta description, canonical URL, absolute http(s) links (resolved
against the page URL, fragment dropped, first occurrence of each URL kept) with their
anchor text (whitespace collapsed), and the visible text (outside script, style, title,
noscript, template, textarea, iframe) as a word count and a character length. One JSON
line per page goes to --out, and a summary line to stderr.

    bs4_extract.py --parser bs4|lxml --root DIR --list FILE --base URL [--out FILE]

--list holds paths relative to --root, one a line (not URL-encoded); a page's URL is
--base + "/" + its path percent-encoded, i.e. the URL it was crawled from.

--parser bs4:  BeautifulSoup(html, "lxml")  (what most scraping tutorials use)
--parser lxml: lxml.html directly (the fast Python option), for reference
"""

import argparse
import json
import sys
import time
from urllib.parse import quote, urldefrag, urljoin

HIDDEN = ["script", "style", "title", "noscript", "template", "textarea", "iframe"]


def clean(s):
    return " ".join(s.split())


def absolute(page_url, href):
    url = urldefrag(urljoin(page_url, href.strip()))[0]
    return url if url.startswith(("http://", "https://")) else None


def extract_bs4(data, page_url):
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "lxml")
    title = clean(soup.title.get_text()) if soup.title else None
    meta = soup.find("meta", attrs={"name": "description"})
    description = (clean(meta["content"]) or None) if meta and meta.get("content") else None
    link = soup.find("link", rel="canonical")
    canonical = absolute(page_url, link["href"]) if link and link.get("href") else None
    links = {}
    for a in soup.find_all("a", href=True):
        url = absolute(page_url, a["href"])
        if url and url not in links:
            links[url] = clean(a.get_text())
    for tag in soup(HIDDEN):
        tag.decompose()
    text = soup.get_text(" ")
    return title, description, canonical, links, text


def extract_lxml(data, page_url):
    import lxml.html
    from lxml import etree

    doc = lxml.html.document_fromstring(data)
    t = doc.find(".//title")
    title = clean(t.text_content()) if t is not None else None
    d = doc.xpath('//meta[@name="description"]/@content')
    description = (clean(d[0]) or None) if d else None
    c = doc.xpath('//link[@rel="canonical"]/@href')
    canonical = absolute(page_url, c[0]) if c else None
    links = {}
    for a in doc.iter("a"):
        href = a.get("href")
        if href is None:
            continue
        url = absolute(page_url, href)
        if url and url not in links:
            links[url] = clean(a.text_content())
    etree.strip_elements(doc, etree.Comment, *HIDDEN, with_tail=False)
    text = " ".join(doc.itertext())
    return title, description, canonical, links, text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--parser", choices=["bs4", "lxml"], default="bs4")
    ap.add_argument("--root", required=True)
    ap.add_argument("--list", required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--out", default="/dev/null")
    args = ap.parse_args()
    extract = extract_bs4 if args.parser == "bs4" else extract_lxml

    started = time.monotonic()
    pages = nbytes = nlinks = nwords = 0
    with open(args.list, encoding="utf-8") as paths, open(args.out, "w", encoding="utf-8") as out:
        for path in paths:
            path = path.rstrip("\n")
            if not path:
                continue
            with open(f"{args.root}/{path}", "rb") as f:
                data = f.read()
            page_url = f"{args.base}/{quote(path, safe='/')}"
            title, description, canonical, links, text = extract(data, page_url)
            words = len(text.split())
            record = {
                "url": page_url,
                "title": title,
                "description": description,
                "canonical": canonical,
                "links": [{"url": u, "text": t} for u, t in links.items()],
                "word_count": words,
                "text_len": len(clean(text)),
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            pages += 1
            nbytes += len(data)
            nlinks += len(links)
            nwords += words
    secs = time.monotonic() - started
    print(
        f"{args.parser}: {pages} pages, {nbytes} bytes, {nlinks} links, {nwords} words "
        f"in {secs:.1f}s ({pages / secs:.0f} pages/s, {nbytes / secs / 1e6:.2f} MB/s)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
