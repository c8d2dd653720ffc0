"""Requests per second of the HubSpot emulator for the calls dealsync makes most: batch upsert and
batch read of deals (100 per request), over HTTPS.

    .venv/bin/python bench/emulator_hubspot.py                       # starts its own emulator
    .venv/bin/python bench/emulator_hubspot.py --state-dir .state    # a running `dealsync local up`
    .venv/bin/python bench/emulator_hubspot.py --base-url https://127.0.0.1:PORT --token T --ca-file ca.pem

Against its own emulator it also times seeding (``load``) of ``--load`` deals. A running emulator
limits the integration token (burst per 10 s, daily); the person token (``user_access_token``) is
used by default there because the person's requests are never limited.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

PROPERTY = "salesforce_opportunity_id"


def session_for(ca_file: str) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    session.verify = ca_file
    return session


def ensure_property(base_url: str, token: str, ca_file: str) -> None:
    session = session_for(ca_file)
    headers = {"Authorization": f"Bearer {token}"}
    if session.get(f"{base_url}/crm/v3/properties/deals/{PROPERTY}", headers=headers, timeout=30).status_code == 200:
        return
    session.post(f"{base_url}/crm/v3/properties/deals/groups", headers=headers, timeout=30,
                 json={"name": "salesforce_sync", "label": "Salesforce sync"})
    response = session.post(f"{base_url}/crm/v3/properties/deals", headers=headers, timeout=30, json={
        "name": PROPERTY, "label": "Salesforce opportunity id", "type": "string", "fieldType": "text",
        "groupName": "salesforce_sync", "hasUniqueValue": True})
    if response.status_code not in (201, 409):
        raise SystemExit(f"could not create {PROPERTY}: {response.status_code} {response.text}")


def run_phase(name: str, seconds: float, threads: int, make_call: Callable[[requests.Session, int], int],
              ca_file: str) -> dict[str, Any]:
    """Call ``make_call(session, n)`` from ``threads`` threads for ``seconds``; it returns the number
    of records the call covered (negative when the call failed)."""
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    totals = {"requests": 0, "records": 0, "errors": 0}

    def worker(index: int) -> None:
        session = session_for(ca_file)
        n = 0
        while time.monotonic() < deadline:
            covered = make_call(session, index * 1_000_000 + n)
            n += 1
            with lock:
                totals["requests"] += 1
                if covered < 0:
                    totals["errors"] += 1
                else:
                    totals["records"] += covered

    started = time.monotonic()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.monotonic() - started
    result = {"phase": name, "seconds": round(elapsed, 2), **totals,
              "requests_per_second": round(totals["requests"] / elapsed, 1),
              "records_per_second": round(totals["records"] / elapsed, 1),
              "api_calls_per_record": round(totals["requests"] / totals["records"], 4) if totals["records"] else None}
    print(json.dumps(result))
    return result


def bench(base_url: str, token: str, ca_file: str, seconds: float, threads: int, batch: int) -> None:
    ensure_property(base_url, token, ca_file)
    headers = {"Authorization": f"Bearer {token}"}
    written: list[str] = []
    written_lock = threading.Lock()
    run_tag = str(int(time.time()))

    def upsert(session: requests.Session, n: int) -> int:
        keys = [f"BENCH-{run_tag}-{n}-{i}" for i in range(batch)]
        body = {"inputs": [{"id": key, "idProperty": PROPERTY, "properties": {
            "dealname": f"Bench {key}", "dealstage": "qualifiedtobuy", "amount": str(i)}}
            for i, key in enumerate(keys)]}
        response = session.post(f"{base_url}/crm/v3/objects/deals/batch/upsert", json=body, headers=headers,
                                 timeout=60)
        if response.status_code != 200:
            return -1
        with written_lock:
            written.extend(keys)
        return batch

    def read(session: requests.Session, n: int) -> int:
        with written_lock:
            start = (n * batch) % max(1, len(written) - batch)
            keys = written[start:start + batch]
        body = {"idProperty": PROPERTY, "properties": ["dealname", "amount", "dealstage"], "propertiesWithHistory": [],
                "inputs": [{"id": key} for key in keys]}
        response = session.post(f"{base_url}/crm/v3/objects/deals/batch/read", json=body, headers=headers, timeout=60)
        return len(response.json().get("results", [])) if response.status_code in (200, 207) else -1

    run_phase("batch_upsert", seconds, threads, upsert, ca_file)
    run_phase("batch_read", seconds, threads, read, ca_file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url")
    parser.add_argument("--token")
    parser.add_argument("--ca-file")
    parser.add_argument("--state-dir", type=Path, help="read hubspot endpoints from DIR/endpoints.json")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each phase")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--load", type=int, default=100_000, help="deals to seed first (own emulator only)")
    args = parser.parse_args()

    if args.state_dir:
        endpoints = json.loads((args.state_dir / "endpoints.json").read_text())["hubspot"]
        token = args.token or endpoints.get("user_access_token") or endpoints["access_token"]
        bench(endpoints["base_url"], token, endpoints["ca_file"], args.seconds, args.threads, args.batch)
        return
    if args.base_url:
        if not (args.token and args.ca_file):
            parser.error("--base-url needs --token and --ca-file")
        bench(args.base_url, args.token, args.ca_file, args.seconds, args.threads, args.batch)
        return

    from dealsync_local.emulator import EmulatorServer
    from dealsync_local.hubspot import HubSpotEmulator
    from dealsync_local.tls import ensure_local_tls

    tls = ensure_local_tls(Path(tempfile.mkdtemp(prefix="hubspot-bench-")))
    app = HubSpotEmulator(rate_limits=False)
    if args.load:
        started = time.monotonic()
        app.load(deals=[{"dealname": f"Seed {i}", "dealstage": "qualifiedtobuy", "amount": str(i % 9_000),
                         "closedate": "2025-06-30T00:00:00.000Z"} for i in range(args.load)])
        elapsed = time.monotonic() - started
        print(json.dumps({"phase": "load", "deals": args.load, "seconds": round(elapsed, 2),
                          "records_per_second": round(args.load / elapsed, 1), "api_calls_per_record": 0}))
    server = EmulatorServer(app, tls=tls).start()
    try:
        bench(server.base_url, app.integration_token, str(tls.ca_file), args.seconds, args.threads, args.batch)
    finally:
        server.stop()
        app.close()


if __name__ == "__main__":
    main()
