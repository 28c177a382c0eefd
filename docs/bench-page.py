"""Times a dashboard page of a past date as Chromium asks for it (the
figures of docs/benchmarks.md, decision 202): the page's requests, six at
a time (one host over HTTP/1.1), a `busy` (429) waited out as app.js
waits (Retry-After, at most 10 s, 5 attempts).

    python3 docs/bench-page.py http://127.0.0.1:8080 TOKEN standards 2026-11-29
    python3 docs/bench-page.py http://127.0.0.1:8080 TOKEN fit 2026-11-24

A moment instead of a date (`2026-11-29T17:00:00Z`) asks for the page as
known at it, as the dashboard's "as known at" picker does (decision 203).
"""
import concurrent.futures as cf, json, sys, time, urllib.error, urllib.request

base, token, page, as_of = sys.argv[1:5]

def months(day, n=6):
    y, m = int(day[:4]), int(day[5:7])
    out = []
    for _ in range(n):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    return out[::-1]

at = f"known_at={as_of}" if "T" in as_of else f"as_of={as_of}"
if page == "standards":
    urls = [f"/v1/standards/{c}?period={as_of[:7]}&{at}" for c in ("fds", "d31", "d62")]
    urls += [f"/v1/standards/{c}?period={p}&{at}" for c in ("fds", "d31", "d62") for p in months(as_of)]
elif page == "fit":
    urls = [f"/v1/fit?period={p}&{at}" for p in months(as_of)]
else:
    raise SystemExit(page)

busy = 0
def get(url):
    global busy
    for attempt in range(6):
        req = urllib.request.Request(base + url, headers={"authorization": f"Bearer {token}", "accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return len(r.read())
        except urllib.error.HTTPError as e:
            if e.code == 429 and attempt < 5:
                busy += 1
                time.sleep(min(float(e.headers.get("retry-after") or 1), 10))
                continue
            raise

t = time.time()
with cf.ThreadPoolExecutor(6) as ex:
    sizes = list(ex.map(get, urls))
print(json.dumps({"page": page, "as_of": as_of, "requests": len(urls), "seconds": round(time.time() - t, 2), "busy": busy, "bytes": sum(sizes)}))
