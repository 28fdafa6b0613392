#!/usr/bin/env python3
"""Summarise a DWARF-callgraph `perf script -F tid,ip,sym` dump of sluice (and strace -c
counts) into markdown. Used by benches/load/run.sh with LOAD_PROFILE=1.

usage: profile.py PERF_SCRIPT.txt TITLE [REQUESTS_DURING_PERF]
  prints: samples, inclusive share per component (a sample counts for every component
  one of its frames belongs to, so shares overlap), and the top self-time symbols.

usage: profile.py --strace NAME=STRACE_C.txt:REQUESTS ...
  prints syscalls per request for each NAME side by side.
"""
import collections
import re
import sys

# (label, regex on any frame of the stack) — inclusive.
COMPONENTS = [
    ("kernel: send/writev, incl. loopback delivery to the peer", r"__sys_sendto|do_writev|ksys_write\b|__x64_sys_writev"),
    ("kernel: recv/read", r"__sys_recvfrom|ksys_read\b|__x64_sys_readv|tcp_recvmsg"),
    ("kernel: epoll_wait", r"do_epoll_wait"),
    ("kernel: getpeername (Pingora's pooled-fd check)", r"__sys_getpeername"),
    ("kernel: eventfd wake (tokio driver unpark)", r"eventfd_write|mio::sys::unix::waker::Waker::wake"),
    ("Pingora: read + parse the client request", r"v1::server::HttpSession::read_request"),
    ("Pingora: write the response to the client", r"v1::server::HttpSession::write_(response|body)|Session::write_response"),
    ("sluice: proxy::Gateway::handle (everything sluice decides + relays)", r"sluice::proxy::Gateway::handle"),
    ("sluice: relay::Relay::forward (upstream exchange + response relay)", r"sluice::relay::Relay::forward"),
    ("Pingora connector: get pooled upstream connection", r"Connector<C>::get_http_session|TransportConnector::reused_stream"),
    ("Pingora connector: release connection to the pool", r"release_http_session|ConnectionPool<S>::put|release_stream"),
    ("upstream request: write head + body", r"v1::client::HttpSession::write_request_(header|body)"),
    ("upstream response: read + parse head", r"v1::client::HttpSession::read_response(_header)?\b|read_response_header"),
    ("headers: relay::headers::upstream_request", r"sluice::relay::headers::upstream_request"),
    ("headers: relay::headers::client_response", r"sluice::relay::headers::client_response"),
    ("headers: http::HeaderMap / HeaderName ops", r"^http::header::"),
    ("auth: sluice::auth (tenant lookup)", r"sluice::auth::"),
    ("SHA-256 (sha2)", r"sha2::"),
    ("JSON parsing (serde_json)", r"serde_json::"),
    ("sluice::peek (model/stream of the body)", r"sluice::peek::"),
    ("sluice::usage (usage from the answer)", r"sluice::usage::"),
    ("sluice::observe (ids, Server-Timing, access log)", r"sluice::observe::"),
    ("metrics (prometheus)", r"^prometheus::"),
    ("limiter (sluice::limit)", r"sluice::limit::"),
    ("filters (sluice::filter)", r"sluice::filter::"),
    ("string formatting (core::fmt / format!)", r"^core::fmt::|alloc::fmt::format"),
    ("clock reads (clock_gettime / Instant::now)", r"clock_gettime|Instant>::now|Instant::now"),
    ("timers (tokio timer wheel / pingora_timeout)", r"tokio::runtime::time::|TimerEntry|Sleep::poll_elapsed|pingora_timeout::timer::"),
]

# (label, regex on the leaf frame) — self time.
LEAF = [
    ("malloc/free/realloc (glibc)", r"^(malloc|_int_malloc|_int_free|cfree|free|realloc|_int_realloc|unlink_chunk|malloc_consolidate|__libc_malloc|__libc_free|__GI___libc_free|__GI___libc_malloc|tcache|_int_memalign)"),
    ("memcpy/memmove", r"memmove|memcpy|memset"),
    ("tokio scheduler (self)", r"^tokio::"),
    ("kernel (self, any)", r"^\[k\]"),
]


def parse(path):
    """Yield (tid, [frames leaf→root]) from `perf script -F tid,ip,sym` output."""
    stack, tid = [], None
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if not line.strip():
            if tid is not None:
                yield tid, stack
            stack, tid = [], None
            continue
        if not line.startswith("\t") and not line.startswith(" " * 8):
            tid = line.split()[0]
            continue
        parts = line.strip().split(None, 1)
        if len(parts) == 2:
            sym = parts[1]
            sym = re.sub(r" \(inlined\)$", "", sym)
            sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
            sym = re.sub(r" \((/|\[)[^)]*\)$", "", sym)
            if re.match(r"^[0-9a-f]{8,}", parts[0]) and parts[0].startswith("ffffffff"):
                sym = "[k] " + sym
            stack.append(sym)
    if tid is not None:
        yield tid, stack


def perf_summary(path, title, requests=None):
    comp = collections.Counter()
    leaf = collections.Counter()
    leafcat = collections.Counter()
    n = 0
    for _tid, st in parse(path):
        if not st:
            continue
        n += 1
        bare = [re.sub(r"^\[k\] ", "", f) for f in st]
        for label, rx in COMPONENTS:
            r = re.compile(rx)
            if any(r.search(f) for f in bare):
                comp[label] += 1
        leaf[st[0]] += 1
        for label, rx in LEAF:
            if re.search(rx, st[0]):
                leafcat[label] += 1
                break
    out = [f"### {title}", "", f"{n} samples (cpu-clock, DWARF call graphs)."]
    if requests:
        out.append(f"{requests} requests were served while sampling.")
    out += ["", "| component (inclusive: a sample counts for every component on its stack) | share of samples |", "|---|---:|"]
    for label, _ in COMPONENTS:
        if comp[label]:
            out.append(f"| {label} | {100 * comp[label] / n:.1f}% |")
    out += ["", "| self time by kind (leaf frame) | share |", "|---|---:|"]
    for label, _ in LEAF:
        out.append(f"| {label} | {100 * leafcat[label] / n:.1f}% |")
    out += ["", "| top self-time symbols | share |", "|---|---:|"]
    for sym, c in leaf.most_common(30):
        out.append(f"| `{sym[:110]}` | {100 * c / n:.1f}% |")
    return "\n".join(out) + "\n"


def strace_table(specs):
    cols = []
    for spec in specs:
        name, rest = spec.split("=", 1)
        path, req = rest.rsplit(":", 1)
        counts = {}
        for line in open(path):
            f = line.split()
            if len(f) >= 5 and re.match(r"^[0-9.]+$", f[0]) and f[-1] != "total":
                calls = int(f[3])
                counts[f[-1]] = calls
        cols.append((name, int(req), counts))
    names = sorted({s for _, _, c in cols for s in c}, key=lambda s: -max(c.get(s, 0) / max(r, 1) for _, r, c in cols))
    out = ["| syscall | " + " | ".join(f"{n} per request" for n, _, _ in cols) + " |",
           "|---|" + "---:|" * len(cols)]
    for s in names:
        vals = [c.get(s, 0) / max(r, 1) for _, r, c in cols]
        if max(vals) < 0.005:
            continue
        out.append(f"| {s} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
    tot = [sum(c.values()) / max(r, 1) for _, r, c in cols]
    out.append("| **all** | " + " | ".join(f"**{v:.2f}**" for v in tot) + " |")
    out.append("")
    out.append("(" + "; ".join(f"{n}: {r} requests under strace -f -c" for n, r, _ in cols) + ")")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if sys.argv[1] == "--strace":
        print(strace_table(sys.argv[2:]))
    else:
        print(perf_summary(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
