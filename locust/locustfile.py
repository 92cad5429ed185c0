"""Load scenarios for the shortener (Locust, https://locust.io).

    pip install locust==2.47.0
    SHORTENER_KEY=$(cat data/admin.key) locust -f locust/locustfile.py \
        --host http://127.0.0.1:8080 --headless -u 50 -r 10 -t 1m \
        --csv /tmp/locust --html /tmp/locust.html

Users, weighted like a shortener's traffic:
- Visitor (most): redirects over LINKS links with Zipf-distributed popularity (a few hot
  links take most clicks; the long tail misses the in-process cache).
- Creator: creates links with the API key.
- Bot: bursts of redirects with a crawler's User-Agent (counted as bots in statistics).
- Scanner: 404 scans of random codes (answered 404, then 429 past its rate limit).
- Analyst: reads statistics.

Locust is closed-loop: each user waits for an answer before the next request, so when
the service slows down, Locust sends less and its latencies understate what users would
see (coordinated omission). For latency at a fixed rate, use the open-loop generator:
scripts/bench-open-loop.sh (benches/open_loop.rs).

Every simulated user is a client of its own: it sends its own address in
X-Forwarded-For, which the service trusts from the proxy in front of it
(clicks.trusted_proxies), so per-client rate limits apply per user, as they would to
real visitors behind nginx.

Settings (environment): SHORTENER_KEY (required: an API key with links:write, links:read
and stats:read, or admin), LINKS (how many links the visitors spread over, default
100000; made by links.py at the run's start unless they exist: make them first, that
takes a while), ZIPF_S (1.0). At the end of a run, `redirects_sent.json` (or the file
REDIRECTS_SENT names) holds every redirect answered 3xx (visitors' and bots') per code,
and the links' click totals at the start, for check_totals.py to compare with the
statistics the service reports.
"""

import bisect
import json
import os
import random
import sys

from locust import HttpUser, between, constant, events, task

KEY = os.environ.get("SHORTENER_KEY", "")
LINKS = int(os.environ.get("LINKS", "100000"))
ZIPF_S = float(os.environ.get("ZIPF_S", "1.0"))
PREFIX = os.environ.get("CODE_PREFIX", "lc-")
SENT_FILE = os.environ.get("REDIRECTS_SENT", "redirects_sent.json")
AUTH = {"authorization": f"Bearer {KEY}"}
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
CRAWLER = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"

# Zipf's cumulative weights over ranks 1..LINKS, for drawing a rank by bisection.
_cumulative = []
_total = 0.0
for rank in range(1, LINKS + 1):
    _total += 1.0 / rank**ZIPF_S
    _cumulative.append(_total)

SENT = {}  # code -> GET redirects the visitors sent and saw answered 3xx
BEFORE = {}  # code -> its clicks when the run started


def zipf_code():
    rank = bisect.bisect_left(_cumulative, random.random() * _total)
    return f"{PREFIX}{rank}"


@events.test_start.add_listener
def make_links(environment, **_):
    """Makes the links the visitors ask for unless they exist (links.py), and notes their
    click totals, so that check_totals.py can tell this run's clicks from earlier ones."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from links import clicks, create_links

    if not KEY:
        raise SystemExit("SHORTENER_KEY must hold an API key (see locust/README.md)")
    create_links(environment.host, KEY, LINKS, PREFIX)
    BEFORE.update(clicks(environment.host, KEY))


@events.test_stop.add_listener
def save_sent(environment, **_):
    with open(SENT_FILE, "w") as out:
        json.dump({"sent": SENT, "before": BEFORE}, out)


REDIRECTS = (301, 302, 307, 308)


def judge(response, expected):
    """Marks an answer (caught with catch_response) a success when its status is expected."""
    if response.status_code in expected:
        response.success()
    else:
        response.failure(f"{response.status_code}")


class Client(HttpUser):
    """A user with an address of its own (see the module docs)."""

    abstract = True

    def on_start(self):
        address = "10.%d.%d.%d" % tuple(random.randrange(1, 255) for _ in range(3))
        self.client.headers["x-forwarded-for"] = address

    def redirect(self, agent, name):
        code = zipf_code()
        with self.client.get(
            f"/{code}", name=name, allow_redirects=False,
            headers={"user-agent": agent}, catch_response=True,
        ) as response:
            if response.status_code in REDIRECTS:
                SENT[code] = SENT.get(code, 0) + 1
            judge(response, REDIRECTS)


class Visitor(Client):
    weight = 20
    wait_time = constant(0)

    @task
    def visit(self):
        self.redirect(FIREFOX, "/{code}")


class Creator(Client):
    weight = 1
    wait_time = between(0.5, 1.5)

    @task
    def create(self):
        with self.client.post(
            "/api/v1/links", name="/api/v1/links",
            json={"url": f"https://example.com/new/{random.getrandbits(64)}"},
            headers=AUTH, catch_response=True,
        ) as response:
            judge(response, (201,))


class Bot(Client):
    weight = 2
    wait_time = between(2, 5)

    @task
    def burst(self):
        for _ in range(20):
            self.redirect(CRAWLER, "/{code} (bot)")


class Scanner(Client):
    weight = 1
    wait_time = constant(0.05)

    @task
    def scan(self):
        code = "scan-%016x" % random.getrandbits(64)
        with self.client.get(f"/{code}", name="/{code} (scan)", catch_response=True) as response:
            # Unknown codes are 404, and 429 once this client passes its miss budget:
            # both are the service working.
            judge(response, (404, 429))


class Analyst(Client):
    weight = 1
    wait_time = between(1, 3)

    @task
    def stats(self):
        code = zipf_code()
        self.client.get(
            f"/api/v1/links/{code}/stats", name="/api/v1/links/{code}/stats",
            headers=AUTH,
        )
