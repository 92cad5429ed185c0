"""The linger sweep as a picture: scripts/bench-linger.sh's output (its "csv," lines)
into a PNG with two panels sharing the linger axis: what batching buys (the most clicks
a second the service produces; produce requests a second at a steady rate) and what it
costs (click to acknowledgement and click to statistics, p50 and p99).

    python3 -m venv /tmp/plot && /tmp/plot/bin/pip install -q matplotlib==3.9.2
    /tmp/plot/bin/python scripts/plot-linger.py /tmp/linger.txt docs/img/linger.png
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(path):
    with open(path) as text:
        lines = [line[4:] for line in text if line.startswith("csv,")]
    table = list(csv.DictReader(lines))
    return [{k: float(v) for k, v in row.items()} for row in table]


def main():
    table = rows(sys.argv[1])
    # 0 cannot sit on a log axis: it is drawn at 0.1 and labelled 0.
    x = [max(r["linger_ms"], 0.1) for r in table]
    labels = [f"{r['linger_ms']:g}" for r in table]
    fig, (gain, cost) = plt.subplots(1, 2, figsize=(11, 4.2))

    gain.plot(x, [r["max_clicks_per_s"] / 1000 for r in table], "o-", label="most clicks/s produced (thousands)")
    gain.plot(x, [r["open_requests_per_s"] for r in table], "s--", label="produce requests/s at the steady rate")
    gain.set_title("What a longer linger buys")
    cost.plot(x, [r["ack_p50_ms"] for r in table], "o-", label="click → broker ack, p50")
    cost.plot(x, [r["ack_p99_ms"] for r in table], "o--", label="click → broker ack, p99")
    cost.plot(x, [r["stats_p50_ms"] for r in table], "s-", label="click → statistics, p50")
    cost.plot(x, [r["stats_p99_ms"] for r in table], "s--", label="click → statistics, p99")
    cost.set_title("What it costs (ms)")
    for axis in (gain, cost):
        axis.set_xscale("log")
        axis.set_xticks(x, labels)
        axis.minorticks_off()
        axis.set_xlabel("kafka.linger_ms")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    gain.set_yscale("log")
    cost.set_yscale("log")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


main()
