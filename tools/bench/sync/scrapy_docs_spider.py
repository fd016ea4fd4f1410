"""A typical Scrapy crawler for the end-to-end comparison in tools/bench-sync.

Fetches every URL of a list (no link following) and stores each page (url, status,
title, body) in MySQL through an item pipeline that INSERTs and COMMITs each item with
pymysql, as Scrapy's own docs and most tutorials show.

    scrapy runspider scrapy_docs_spider.py -a urls=FILE -a mysql_db=DB \
        [-a mysql_host=127.0.0.1 -a mysql_port=3306 -a mysql_user=root -a mysql_password=]
"""

import pymysql
import scrapy


class MysqlPipeline:
    def open_spider(self, spider=None):
        spider = spider or self.spider
        self.conn = pymysql.connect(
            host=spider.mysql_host,
            port=int(spider.mysql_port),
            user=spider.mysql_user,
            password=spider.mysql_password,
            database=spider.mysql_db,
            charset="utf8mb4",
            autocommit=False,
        )
        self.cur = self.conn.cursor()
        self.cur.execute(
            "CREATE TABLE IF NOT EXISTS scrapy_pages ("
            " id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,"
            " url TEXT NOT NULL, status SMALLINT UNSIGNED, title TEXT, body LONGBLOB"
            ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )
        self.conn.commit()

    @classmethod
    def from_crawler(cls, crawler):
        pipeline = cls()
        pipeline.crawler = crawler
        return pipeline

    def close_spider(self, spider=None):
        self.conn.close()

    def process_item(self, item, spider=None):
        self.cur.execute(
            "INSERT INTO scrapy_pages (url, status, title, body) VALUES (%s, %s, %s, %s)",
            (item["url"], item["status"], item["title"], item["body"]),
        )
        self.conn.commit()
        return item

    @property
    def spider(self):
        return self.crawler.spider


class DocsSpider(scrapy.Spider):
    name = "docs"
    custom_settings = {
        "CONCURRENT_REQUESTS": 64,
        # Every URL is on one host: without this Scrapy's default (8 per domain) would
        # cap it at 8 requests in flight. webspool gets --per-host 64 likewise.
        "CONCURRENT_REQUESTS_PER_DOMAIN": 64,
        "DOWNLOAD_DELAY": 0,
        "AUTOTHROTTLE_ENABLED": False,
        "ROBOTSTXT_OBEY": False,
        "HTTPCACHE_ENABLED": False,
        # No link following: some doc pages are stubs with <meta http-equiv="refresh">
        # to other sites, which Scrapy would otherwise fetch instead of the page itself.
        "METAREFRESH_ENABLED": False,
        "LOG_LEVEL": "WARNING",
        "TELNETCONSOLE_ENABLED": False,
        "ITEM_PIPELINES": {"scrapy_docs_spider.MysqlPipeline": 300},
    }

    def __init__(
        self,
        urls=None,
        mysql_db=None,
        mysql_host="127.0.0.1",
        mysql_port="3306",
        mysql_user="root",
        mysql_password="",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not urls or not mysql_db:
            raise ValueError("give -a urls=FILE -a mysql_db=DB")
        self.urls_file = urls
        self.mysql_db = mysql_db
        self.mysql_host = mysql_host
        self.mysql_port = mysql_port
        self.mysql_user = mysql_user
        self.mysql_password = mysql_password

    def _requests(self):
        with open(self.urls_file) as f:
            for line in f:
                url = line.strip()
                if url and not url.startswith("#"):
                    yield scrapy.Request(url, callback=self.parse, dont_filter=True)

    async def start(self):  # Scrapy >= 2.13
        for request in self._requests():
            yield request

    def start_requests(self):  # older Scrapy
        yield from self._requests()

    def parse(self, response):
        yield {
            "url": response.url,
            "status": response.status,
            "title": response.css("title::text").get(),
            "body": response.body,
        }
