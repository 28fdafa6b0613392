#!/usr/bin/env python3
"""Turn benches/load/run.sh's raw TSV into the results table (stdout + markdown file).

usage: report.py RAW.tsv[,RAW2.tsv...] RESULTS.md key=value...   (keys: date machine command settings
versions filters_note)

RAW columns: scenario proxy round req/s p50_us p99_us p999_us non2xx sockerr cpu_us_per_req
(scenario 4 rows have proxy = direct | sluice | nginx and an empty CPU column).
Each figure is the median over rounds (and over files, when several are given); the
added latency of scenario 4 is the median of the per-round differences to "direct".
"""
import statistics
import sys

NAMES = {
    "1": "1 plain relay (auth + key injection)",
    "2": "2 seed setup (auth + limit + redaction + JSON log)",
    "3": "3 streaming relay (SSE, 5 deltas)",
}


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def num(v):
    try:
        return float(v)
    except ValueError:
        return None


def ms(us):
    return "–" if us is None else f"{us / 1000:.2f} ms"


def signed_ms(us):
    return "–" if us is None else f"{us / 1000:+.2f} ms"


def main():
    raw, out = sys.argv[1], sys.argv[2]
    meta = dict(a.split("=", 1) for a in sys.argv[3:])
    rows = {}
    lines = [(i, l) for i, path in enumerate(raw.split(",")) for l in open(path)]
    pairs = {}  # scenario 4: (file, round) -> proxy -> row, to subtract "direct" per round
    for run, line in lines:
        f = line.rstrip("\n").split("\t")
        if len(f) < 10:
            continue
        if f[0] == "4":
            pairs.setdefault((run, f[2]), {})[f[1]] = {m: num(f[i]) for m, i in (("p50", 4), ("p99", 5), ("p999", 6))}
        key = (f[0], f[1])
        r = rows.setdefault(key, {"rps": [], "p50": [], "p99": [], "p999": [], "bad": 0, "err": 0, "cpu": [], "mcpu": []})
        r["rps"].append(num(f[3]))
        r["p50"].append(num(f[4]))
        r["p99"].append(num(f[5]))
        r["p999"].append(num(f[6]))
        r["bad"] += int(f[7] or 0)
        r["err"] += int(f[8] or 0)
        r["cpu"].append(num(f[9]))
        r["mcpu"].append(num(f[10]) if len(f) > 10 else None)
    med = {k: {m: (median(v) if isinstance(v, list) else v) for m, v in r.items()} for k, r in rows.items()}

    md = []
    md.append(f"# Load results: sluice vs nginx\n")
    md.append(f"- date: {meta.get('date', '?')}")
    md.append(f"- machine: {meta.get('machine', '?')}")
    md.append(f"- command: `{meta.get('command', '?')}`")
    md.append(f"- settings: {meta.get('settings', '?')}")
    md.append(f"- versions: {meta.get('versions', '?')}")
    if meta.get("filters_note"):
        md.append(f"- **note**: {meta['filters_note']}")
    md.append("")

    warn = []
    thru = [s for s in ("1", "2", "3") if (s, "sluice") in med and (s, "nginx") in med]
    if thru:
        md.append("| scenario | sluice req/s | nginx req/s | sluice/nginx | sluice p50 / p99 | nginx p50 / p99 | proxy CPU µs/req (cores busy) sluice / nginx | mock CPU µs/req in sluice / nginx runs |")
        md.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for s in thru:
            a, b = med[(s, "sluice")], med[(s, "nginx")]
            ratio = a["rps"] / b["rps"] if a["rps"] and b["rps"] else None
            def cpu_cell(r):
                if r["cpu"] is None:
                    return "–"
                return f"{r['cpu']:.1f} ({r['cpu'] * r['rps'] / 1e6:.2f})"
            cpu = f"{cpu_cell(a)} / {cpu_cell(b)}"
            mcpu = (f"{a['mcpu']:.1f} / {b['mcpu']:.1f}" if a["mcpu"] is not None and b["mcpu"] is not None else "–")
            md.append(
                f"| {NAMES[s]} | {a['rps']:,.0f} | {b['rps']:,.0f} | {ratio:.2f} | "
                f"{ms(a['p50'])} / {ms(a['p99'])} | {ms(b['p50'])} / {ms(b['p99'])} | {cpu} | {mcpu} |"
            )
            for p, r in (("sluice", a), ("nginx", b)):
                if r["bad"] or r["err"]:
                    warn.append(f"scenario {s} {p}: {r['bad']} non-2xx answers, {r['err']} socket errors")
        md.append("")

    if ("4", "direct") in med:
        d = med[("4", "direct")]
        md.append("| fixed rate (scenario 4) | achieved req/s | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 | proxy CPU µs/req | mock CPU µs/req |")
        md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for p, label in (("direct", "direct to the mock"), ("sluice", "through sluice (scenario-2 config)"), ("nginx", "through nginx+Lua (scenario-2 config)")):
            if ("4", p) not in med:
                continue
            r = med[("4", p)]
            if p == "direct":
                added = ["–"] * 3
            else:  # median over rounds of (through proxy − direct, same round)
                added = [signed_ms(median([v[p][m] - v["direct"][m] for v in pairs.values() if p in v and "direct" in v]))
                         for m in ("p50", "p99", "p999")]
            cpu = "–" if r["cpu"] is None else f"{r['cpu']:.1f}"
            mcpu = "–" if r["mcpu"] is None else f"{r['mcpu']:.1f}"
            md.append(f"| {label} | {r['rps']:,.0f} | {ms(r['p50'])} | {ms(r['p99'])} | {ms(r['p999'])} | "
                      + " | ".join(added) + f" | {cpu} | {mcpu} |")
            if r["bad"] or r["err"]:
                warn.append(f"scenario 4 {p}: {r['bad']} non-2xx answers, {r['err']} errors")
        md.append("")

    for w in warn:
        md.append(f"- **warning**: {w}")
    text = "\n".join(md).rstrip() + "\n"
    with open(out, "w") as fh:
        fh.write(text)
    print()
    print(text)
    print(f"(written to {out})")


if __name__ == "__main__":
    main()
