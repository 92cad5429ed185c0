"""The links a Locust run uses, through the API: making them, and reading their clicks.

    SHORTENER_KEY=$(cat .stack/admin.key) python locust/links.py http://127.0.0.1:8080

makes the links the visitors follow (aliases lc-0 ... lc-<LINKS-1>), once. The
locustfile does the same when a run starts and the last link is missing, but the run's
time (-t) counts from then, and 100,000 links take about 90 s on a 2-core machine: make
them first. A 409 (the alias exists) counts as made. Settings: SHORTENER_KEY, LINKS
(100000), CODE_PREFIX (lc-).
"""

import json
import os
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def create_links(host, key, count, prefix="lc-", threads=32):
    """Makes links prefix0 ... prefix<count-1>; returns how many it asked for (0 if the
    last one exists already)."""
    import requests

    auth = {"authorization": f"Bearer {key}"}
    if requests.get(f"{host}/api/v1/links/{prefix}{count - 1}", headers=auth).status_code == 200:
        return 0
    local = threading.local()

    def create(i):
        if not hasattr(local, "session"):
            local.session = requests.Session()  # keep-alive: one connection per thread
        # Each link from an address of its own (198.18.0.0/15, for benchmarks): the
        # per-client API limit does not throttle the setup.
        headers = {**auth, "x-forwarded-for": f"198.18.{i % 250}.{i // 250 % 250 + 1}"}
        body = {"url": f"https://example.com/locust/{i}", "alias": f"{prefix}{i}"}
        while True:
            response = local.session.post(f"{host}/api/v1/links", headers=headers, json=body)
            if response.status_code != 429:
                break
            # The key's own rate limit (limits.api_per_key): wait as told.
            time.sleep(float(response.headers.get("retry-after", "1")))
        if response.status_code not in (201, 409):
            raise SystemExit(f"creating {prefix}{i}: {response.status_code} {response.text}")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, range(count)))
    return count


def clicks(host, key):
    """Every link of the key's owner with its click total: {code: clicks}."""
    counted, cursor = {}, None
    while True:
        url = f"{host}/api/v1/links?limit=1000" + (f"&cursor={cursor}" if cursor else "")
        request = urllib.request.Request(url, headers={"authorization": f"Bearer {key}"})
        page = json.load(urllib.request.urlopen(request))
        for link in page["links"]:
            counted[link["code"]] = link["clicks"]
        cursor = page["next_cursor"]
        if not cursor:
            return counted


if __name__ == "__main__":
    started = time.monotonic()
    made = create_links(
        sys.argv[1],
        os.environ["SHORTENER_KEY"],
        int(os.environ.get("LINKS", "100000")),
        os.environ.get("CODE_PREFIX", "lc-"),
    )
    print(f"asked for {made} links in {time.monotonic() - started:.0f} s")
