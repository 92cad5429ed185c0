"""After a Locust run: do the statistics count every redirect Locust saw answered?

    python locust/check_totals.py http://127.0.0.1:8080 redirects_sent.json

Reads the per-code counts the run wrote (redirects answered 3xx, visitors' and bots'),
then the links' click totals from the API (SHORTENER_KEY), waiting up to TIMEOUT seconds
(default 60) for the click pipeline to catch up. Exits 0 when no code has fewer clicks
than were sent and the excess is at most IN_FLIGHT (default 100, at least the run's
users): when a run stops, each user may have a request the service answered (and
counted) whose answer Locust no longer read. Exits 1 with the differences otherwise.
"""

import json
import os
import sys
import time
import urllib.request

host, sent_file = sys.argv[1], sys.argv[2]
key = os.environ["SHORTENER_KEY"]
timeout = float(os.environ.get("TIMEOUT", "60"))
sent = json.load(open(sent_file))


def totals():
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


in_flight = int(os.environ.get("IN_FLIGHT", "100"))
deadline = time.monotonic() + timeout
while True:
    counted = totals()
    missing = {code: (n, counted.get(code, 0)) for code, n in sent.items() if counted.get(code, 0) < n}
    excess = sum(counted.get(code, 0) - n for code, n in sent.items() if counted.get(code, 0) > n)
    if not missing or time.monotonic() > deadline:
        break
    time.sleep(1)
total = sum(sent.values())
print(f"redirects sent {total}, counted {sum(counted.get(code, 0) for code in sent)}, codes {len(sent)}, "
      f"excess {excess} (answered as the run stopped)")
if missing or excess > in_flight:
    print("counted fewer than sent (sent, counted):", dict(list(missing.items())[:20]))
    sys.exit(1)
