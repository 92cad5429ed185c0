"""After a Locust run: do the statistics count every redirect Locust saw answered?

    python locust/check_totals.py http://127.0.0.1:8080 redirects_sent.json

Reads what the run wrote (the links' click totals when it started, and the redirects it
saw answered 3xx per code, visitors' and bots'), then the totals from the API
(SHORTENER_KEY), waiting up to TIMEOUT seconds (default 60) for the click pipeline to
catch up. Exits 0 when no code gained fewer clicks than were sent and the excess is at
most IN_FLIGHT (default 100, at least the run's users): when a run stops, each user may
have a request the service answered (and counted) whose answer Locust no longer read.
Exits 1 with the differences otherwise, or when the run sent nothing.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from links import clicks  # noqa: E402

host, sent_file = sys.argv[1], sys.argv[2]
key = os.environ["SHORTENER_KEY"]
timeout = float(os.environ.get("TIMEOUT", "60"))
in_flight = int(os.environ.get("IN_FLIGHT", "100"))
run = json.load(open(sent_file))
sent, before = run["sent"], run["before"]
if not sum(sent.values()):
    sys.exit(f"{sent_file} counts no redirect: the run sent none (did its start fail?)")

deadline = time.monotonic() + timeout
while True:
    counted = clicks(host, key)
    gained = {code: counted.get(code, 0) - before.get(code, 0) for code in sent}
    missing = {code: (n, gained[code]) for code, n in sent.items() if gained[code] < n}
    excess = sum(gained[code] - n for code, n in sent.items() if gained[code] > n)
    if not missing or time.monotonic() > deadline:
        break
    time.sleep(1)
print(f"redirects sent {sum(sent.values())}, counted {sum(gained.values())}, codes {len(sent)}, "
      f"excess {excess} (answered as the run stopped)")
if missing or excess > in_flight:
    print("counted fewer than sent (sent, counted):", dict(list(missing.items())[:20]))
    sys.exit(1)
