#!/usr/bin/env python3
"""Table for benches/load/streams.sh: medians over rounds of load-streams' JSON lines.

usage: report_streams.py RAW.jsonl[,RAW2.jsonl...] RESULTS.md key=value...
(keys: date machine command settings versions note)

Every figure is the median over rounds; "added" latency is the median of the per-round
differences to the direct-to-mock run of the same N and round.
"""
import json
import statistics
import sys


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main():
    raw, out = sys.argv[1], sys.argv[2]
    meta = dict(a.split("=", 1) for a in sys.argv[3:])
    rows = [json.loads(l) for path in raw.split(",") for l in open(path) if l.strip()]
    by = {}
    direct = {}
    for i, r in enumerate(rows):
        r["n"] = (r["n"], r.get("interval_ms", 100))
        by.setdefault((r["n"], r["proxy"]), []).append(r)
        if r["proxy"] == "direct":
            direct[(r["n"], r["round"], r.get("_file", 0))] = r
    order = {"direct": 0, "sluice": 1, "nginx": 2}
    lines = [
        "| N streams | setup | open | events/s (offered) | latency p50 / p99 | added p50 / p99 | RSS idle → N open | RSS per open stream | CPU per 1,000 events |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (key, proxy) in sorted(by, key=lambda k: (k[0], order.get(k[1], 9))):
        rs = by[(key, proxy)]
        n, interval = key
        offered = n * 1000 / interval
        add50 = add99 = None
        if proxy != "direct":
            d50, d99 = [], []
            for r in rs:
                d = direct.get((key, r["round"], r.get("_file", 0)))
                if d:
                    d50.append(r["lat_p50_us"] - d["lat_p50_us"])
                    d99.append(r["lat_p99_us"] - d["lat_p99_us"])
            add50, add99 = med(d50), med(d99)
        opened = med([r["open_at_end"] for r in rs])
        evs = med([r["events_per_sec"] for r in rs])
        p50 = med([r["lat_p50_us"] for r in rs])
        p99 = med([r["lat_p99_us"] for r in rs])
        idle = med([r["rss_idle_kib"] for r in rs])
        full = med([r["rss_open_kib"] for r in rs])
        per = med([r["rss_per_stream_kib"] for r in rs])
        cpu = med([r["cpu_ms_per_1000_events"] for r in rs])
        setup = {"direct": "direct to the mock", "sluice": "sluice", "nginx": "nginx (`proxy_buffering off`)"}.get(proxy, proxy)
        if proxy == "direct":
            lines.append(
                f"| {n:,}{'' if interval == 100 else f' (every {interval} ms)'} | {setup} | {opened:,.0f} | {evs:,.0f} ({offered:,.0f}) | {p50 / 1000:.2f} / {p99 / 1000:.2f} ms | – | – | – | (mock: {cpu:.1f} ms) |"
            )
        else:
            lines.append(
                f"| {n:,}{'' if interval == 100 else f' (every {interval} ms)'} | {setup} | {opened:,.0f} | {evs:,.0f} ({offered:,.0f}) | {p50 / 1000:.2f} / {p99 / 1000:.2f} ms"
                f" | {add50 / 1000:+.2f} / {add99 / 1000:+.2f} ms"
                f" | {idle / 1024:.1f} → {full / 1024:.1f} MiB | {per:.1f} KiB | {cpu:.1f} ms |"
            )
    table = "\n".join(lines)
    print(table)
    with open(out, "w") as f:
        f.write("# Scenario 3: concurrent SSE streams (benches/load/streams.sh)\n\n")
        for k in ("date", "machine", "command", "settings", "versions"):
            if meta.get(k):
                f.write(f"- {k}: {meta[k]}\n")
        if meta.get("note"):
            f.write(f"- note: {meta['note']}\n")
        f.write("\n" + table + "\n\n")
        f.write(
            "RSS per open stream = (proxy RSS with N streams open − idle RSS) / N (nginx: master +"
            " worker). CPU = proxy utime+stime over the window per 1,000 events the client"
            " received. Latency = client arrival − mock send time of each event; added ="
            " median over rounds of (proxy − direct) in the same round. Targets (issue #8):"
            " ≤ 32 KiB per open stream at 10,000 streams, added p99 ≤ 2 ms, sluice CPU per event"
            " ≤ nginx's.\n"
        )


if __name__ == "__main__":
    main()
