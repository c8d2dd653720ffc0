"""Requests per second of the Salesforce emulator for the calls dealsync makes most: sObject Collections
upsert on ``HubSpot_Deal_Id__c`` (200 records per request) and SOQL re-reads of opportunities by id
with their contact roles (200 ids per query), over HTTPS.

    .venv/bin/python bench/emulator_salesforce.py                       # starts its own emulator
    .venv/bin/python bench/emulator_salesforce.py --state-dir .state    # a running `dealsync local up`
    .venv/bin/python bench/emulator_salesforce.py --instance-url https://127.0.0.1:PORT --token T --ca-file ca.pem

Against its own emulator it also times seeding (``load``) of ``--load`` opportunities. Against a
running emulator the person's token (``user_access_token``) is used by default, because the person's
requests never count against the org's daily API allocation.
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

API_VERSION = "59.0"
UPSERT_PATH = "composite/sobjects/Opportunity/HubSpot_Deal_Id__c"
READ_FIELDS = ("Id, Name, StageName, CloseDate, Amount, OwnerId, Owner.Email, AccountId, HubSpot_Deal_Id__c, "
               "SystemModstamp, (SELECT ContactId, Role, IsPrimary FROM OpportunityContactRoles)")


def session_for(ca_file: str) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    session.verify = ca_file
    return session


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


def bench(instance_url: str, token: str, ca_file: str, seconds: float, threads: int, batch: int) -> None:
    base = f"{instance_url}/services/data/v{API_VERSION}"
    headers = {"Authorization": f"Bearer {token}", "Sforce-Call-Options": "client=dealsync-bench"}
    written: list[str] = []
    written_lock = threading.Lock()
    run_tag = str(int(time.time()))

    def upsert(session: requests.Session, n: int) -> int:
        records = [{"attributes": {"type": "Opportunity"}, "HubSpot_Deal_Id__c": f"bench-{run_tag}-{n}-{i}",
                    "Name": f"Bench {n}-{i}", "StageName": "Prospecting", "CloseDate": "2026-12-31", "Amount": i}
                   for i in range(batch)]
        response = session.patch(f"{base}/{UPSERT_PATH}", json={"allOrNone": False, "records": records},
                                 headers=headers, timeout=60)
        if response.status_code != 200:
            return -1
        ids = [r["id"] for r in response.json() if r.get("success")]
        with written_lock:
            written.extend(ids)
        return len(ids)

    def read(session: requests.Session, n: int) -> int:
        with written_lock:
            start = (n * batch) % max(1, len(written) - batch)
            ids = written[start:start + batch]
        if not ids:
            return 0
        id_list = ",".join(f"'{i}'" for i in ids)
        soql = f"SELECT {READ_FIELDS} FROM Opportunity WHERE Id IN ({id_list})"  # noqa: S608 - SOQL, ids we made
        response = session.get(f"{base}/query", params={"q": soql}, headers=headers, timeout=60)
        return len(response.json()["records"]) if response.status_code == 200 else -1

    run_phase("collections_upsert", seconds, threads, upsert, ca_file)
    run_phase("query_by_ids", seconds, threads, read, ca_file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instance-url")
    parser.add_argument("--token")
    parser.add_argument("--ca-file")
    parser.add_argument("--state-dir", type=Path, help="read salesforce endpoints from DIR/endpoints.json")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each phase")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--load", type=int, default=100_000, help="opportunities to seed first (own emulator only)")
    args = parser.parse_args()

    if args.state_dir:
        endpoints = json.loads((args.state_dir / "endpoints.json").read_text())["salesforce"]
        token = args.token or endpoints.get("user_access_token") or endpoints["access_token"]
        bench(endpoints["instance_url"], token, endpoints["ca_file"], args.seconds, args.threads, args.batch)
        return
    if args.instance_url:
        if not (args.token and args.ca_file):
            parser.error("--instance-url needs --token and --ca-file")
        bench(args.instance_url, args.token, args.ca_file, args.seconds, args.threads, args.batch)
        return

    from dealsync_local.emulator import EmulatorServer
    from dealsync_local.salesforce.app import SalesforceEmulator
    from dealsync_local.tls import ensure_local_tls

    tls = ensure_local_tls(Path(tempfile.mkdtemp(prefix="salesforce-bench-")))
    app = SalesforceEmulator(daily_request_limit=10_000_000)
    if args.load:
        started = time.monotonic()
        app.load({
            "Account": [{"Name": f"Seed account {i}"} for i in range(max(1, args.load // 10))],
            "Contact": [{"LastName": f"Seed {i}", "Email": f"seed{i}@bench.example",
                         "AccountId": f"@Account:{i % max(1, args.load // 10)}"}
                        for i in range(max(1, args.load // 5))],
            "Opportunity": [{"Name": f"Seed {i}", "StageName": "Prospecting", "CloseDate": "2026-06-30",
                             "Amount": i % 9_000, "AccountId": f"@Account:{i % max(1, args.load // 10)}",
                             "HubSpot_Deal_Id__c": f"seed-{i}"} for i in range(args.load)],
            "OpportunityContactRole": [{"OpportunityId": f"@Opportunity:{i}", "IsPrimary": True,
                                        "ContactId": f"@Contact:{i % max(1, args.load // 5)}"}
                                       for i in range(args.load)],
        })
        elapsed = time.monotonic() - started
        print(json.dumps({"phase": "load", "opportunities": args.load, "seconds": round(elapsed, 2),
                          "records_per_second": round(args.load / elapsed, 1), "api_calls_per_record": 0}))
    server = EmulatorServer(app, tls=tls).start()
    try:
        bench(server.base_url, app.integration_token, str(tls.ca_file), args.seconds, args.threads, args.batch)
    finally:
        server.stop()
        app.close()


if __name__ == "__main__":
    main()
