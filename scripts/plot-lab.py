"""The scaling lab as a picture: scripts/lab-scaling.sh's CSV into a PNG with two panels
per workload: requests a second with 1 and 3 instances, and where the CPU went (cores
used by nginx, the instances, PostgreSQL, Redis, Kafka and the consumer).

    python3 -m venv /tmp/plot && /tmp/plot/bin/pip install -q matplotlib==3.9.2
    /tmp/plot/bin/python scripts/plot-lab.py bench-results/lab-scaling.csv docs/img/lab-scaling.png
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PARTS = ["nginx", "service", "postgres", "redis", "kafka", "consumer"]


def main():
    rows = list(csv.DictReader(open(sys.argv[1])))
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    fig, axes = plt.subplots(2, len(workloads), figsize=(4.2 * len(workloads), 7))
    for col, workload in enumerate(workloads):
        runs = [r for r in rows if r["workload"] == workload]
        labels = [f"{r['instances']} instance{'s' if r['instances'] != '1' else ''}" for r in runs]
        top, bottom = axes[0][col], axes[1][col]
        top.bar(labels, [float(r["rps"]) for r in runs], color="#4c72b0")
        top.set_title(workload)
        top.set_ylabel("requests/s" if col == 0 else "")
        base = [0.0] * len(runs)
        for part in PARTS:
            values = [float(r[f"cpu_{part}"]) for r in runs]
            bottom.bar(labels, values, bottom=base, label=part)
            base = [b + v for b, v in zip(base, values)]
        bottom.axhline(2, color="black", linestyle=":", linewidth=1)
        bottom.set_ylabel("cores used (2 on this machine)" if col == 0 else "")
    axes[1][-1].legend(loc="upper right", fontsize=8)
    fig.suptitle("Scaling lab: 1 vs 3 instances behind nginx on a 2-CPU machine")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
