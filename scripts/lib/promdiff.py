"""What changed between two Prometheus text scrapes: counters as differences, histograms
as quantiles of the observations made between them (linear within a bucket, as
PromQL's histogram_quantile does).

    python3 scripts/lib/promdiff.py before.txt after.txt counter NAME
    python3 scripts/lib/promdiff.py before.txt after.txt quantile NAME Q
    python3 scripts/lib/promdiff.py before.txt after.txt gauge NAME      (the value after)
"""
import re
import sys

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')


def scrape(path):
    series = {}
    with open(path) as text:
        for line in text:
            match = LINE.match(line)
            if match:
                series[(match.group(1), match.group(2) or "")] = float(match.group(3))
    return series


def total(series, name):
    return sum(v for (n, _), v in series.items() if n == name)


def buckets(series, name):
    out = {}
    for (n, labels), v in series.items():
        if n == name + "_bucket":
            le = re.search(r'le="([^"]+)"', labels).group(1)
            bound = float("inf") if le == "+Inf" else float(le)
            out[bound] = out.get(bound, 0.0) + v
    return out


def quantile(before, after, name, q):
    b, a = buckets(before, name), buckets(after, name)
    counts = sorted((bound, a[bound] - b.get(bound, 0.0)) for bound in a)
    if not counts or counts[-1][1] <= 0:
        return float("nan")
    rank = q * counts[-1][1]
    lower, below = 0.0, 0.0
    for bound, cumulative in counts:
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


def main():
    before, after = scrape(sys.argv[1]), scrape(sys.argv[2])
    what, name = sys.argv[3], sys.argv[4]
    if what == "counter":
        print(f"{total(after, name) - total(before, name):.0f}")
    elif what == "gauge":
        print(f"{total(after, name):.1f}")
    else:
        print(f"{quantile(before, after, name, float(sys.argv[5])):.4f}")


main()
