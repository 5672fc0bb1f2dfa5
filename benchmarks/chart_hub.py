"""The Helm chart's hub: admission and API latencies of GemHub as helm/gemhub deploys it.

Starts the platform the chart renders (tests/helm/chartplatform.py: z2jh's proxy and hub,
GemHub's quota/data/ssh services from their rendered Deployments, Debian's PostgreSQL as the
external database, kmock + the test kubelet as the cluster) and measures, through the proxy:

- admission: the REST spawn request (POST /hub/api/users/NAME/server) until its answer,
  which covers the options, the quota service's resolution and the pod's creation, for N
  new users one after the other, and spawn-to-ready (pod running, JupyterLab answering);
- API latency: a GemHub service call (GET /services/quota/api/v1/workspaces: proxy -> quota
  service -> hub token check -> PostgreSQL) against the baseline, the hub's own
  GET /hub/api/user through the same proxy, same client, same tokens, order alternated.

    sudo .venv/bin/python benchmarks/chart_hub.py           # 8 spawns, 400 requests each
    sudo .venv/bin/python benchmarks/chart_hub.py --quick   # 3 spawns, 100 requests each

The last line is JSON: {"admission_p50_ms", "admission_p95_ms", "ready_p50_s", "quota_api_p50_ms",
"quota_api_p95_ms", "hub_api_p50_ms", "hub_api_p95_ms", "api_ratio_p50", "n_spawns", "n_requests"}.
Needs root (network and mount namespaces), like tests/helm/test_chart_hub.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "helm"))

import chartplatform  # noqa: E402
from chartplatform import PROXY  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 spawns and 100 requests per endpoint")
    args = ap.parse_args()
    n_spawns, n_requests = (3, 100) if args.quick else (8, 400)
    reason = chartplatform.missing()
    if reason:
        sys.exit(reason)

    with chartplatform.running() as p:
        admission, ready = [], []
        tokens = []
        for i in range(n_spawns):
            name = f"bench{i}"
            token = p.user(name)
            tokens.append(token)
            t0 = time.perf_counter()
            r = p.api("POST", f"/users/{name}/server", token, json={})
            t1 = time.perf_counter()
            assert r.status_code in (201, 202), r.text
            p.wait_ready(name)
            admission.append((t1 - t0) * 1000)
            ready.append(time.perf_counter() - t0)

        quota, hub = [], []
        with httpx.Client(base_url=PROXY, timeout=30) as client:
            def timed(path: str, token: str) -> float:
                t0 = time.perf_counter()
                r = client.get(path, headers={"Authorization": f"token {token}"})
                dt = (time.perf_counter() - t0) * 1000
                assert r.status_code == 200, r.text
                return dt

            for i in range(n_requests):
                token = tokens[i % len(tokens)]
                calls = [("quota", "/services/quota/api/v1/workspaces"), ("hub", "/hub/api/user")]
                for which, path in calls if i % 2 == 0 else reversed(calls):
                    (quota if which == "quota" else hub).append(timed(path, token))
        for i in range(n_spawns):
            p.api("DELETE", f"/users/bench{i}/server", tokens[i])

    rows = [
        ("admission (POST server)", "ms", admission),
        ("spawn to ready", "s", ready),
        ("quota API via proxy", "ms", quota),
        ("hub API via proxy (baseline)", "ms", hub),
    ]
    print(f"{'measure':32} {'n':>5} {'p50':>9} {'p95':>9} {'max':>9}")
    for label, unit, values in rows:
        print(f"{label:32} {len(values):5d} {pct(values, .5):7.1f}{unit:>2} {pct(values, .95):7.1f}{unit:>2}"
              f" {max(values):7.1f}{unit:>2}")
    print(json.dumps({
        "admission_p50_ms": round(pct(admission, .5), 1), "admission_p95_ms": round(pct(admission, .95), 1),
        "ready_p50_s": round(statistics.median(ready), 2),
        "quota_api_p50_ms": round(pct(quota, .5), 2), "quota_api_p95_ms": round(pct(quota, .95), 2),
        "hub_api_p50_ms": round(pct(hub, .5), 2), "hub_api_p95_ms": round(pct(hub, .95), 2),
        "api_ratio_p50": round(pct(quota, .5) / pct(hub, .5), 2),
        "n_spawns": n_spawns, "n_requests": n_requests,
    }))


if __name__ == "__main__":
    main()
