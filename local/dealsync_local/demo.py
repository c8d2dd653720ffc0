"""Demo data for the local world: a realistic Salesforce org, deterministic by seed.

* ~10 sales reps (Salesforce Users; the same people as HubSpot owners, matched by e-mail);
* three opportunity record types with their own sales processes (New Business, Renewal, Partner:
  different subsets of the org's standard stages, which the Salesforce emulator creates);
* accounts (one per ~4 opportunities), contacts with e-mails at their company's domain;
* opportunities with amounts, close dates, types, lead sources, 0-3 contact roles (one primary), about
  a fifth closed won and an eighth closed lost.

HubSpot gets the owners only: deals, contacts and companies arrive through sync and imports.

``generate(size, seed=7, today=...)`` is pure: the same size, seed and ``today`` give the same records
(``today`` defaults to the current date, so close dates stay around "now"). Records are in the
emulators' bulk-load format: Salesforce ``{"User": [...], "RecordType": [...], ...}`` with references
to records of the same load written ``"@Account:12"``; HubSpot ``{"owners": [...]}``.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dealsync_local.crm import CrmEmulators

MIN_SIZE = 1
MAX_SIZE = 100_000
DEMO_DOMAIN = "dealsync-demo.example"

@dataclass(frozen=True)
class RecordTypeSpec:
    developer_name: str
    name: str
    description: str
    stages: tuple[str, ...]
    amount_range: tuple[int, int]
    types: tuple[str, ...]
    share: float


RECORD_TYPES: tuple[RecordTypeSpec, ...] = (
    RecordTypeSpec(
        "New_Business", "New Business", "Net-new logos: the full sales process",
        ("Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Id. Decision Makers",
         "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review", "Closed Won", "Closed Lost"),
        (5_000, 250_000), ("New Business",), 0.55,
    ),
    RecordTypeSpec(
        "Renewal", "Renewal", "Renewals of existing contracts: a short process",
        ("Qualification", "Proposal/Price Quote", "Negotiation/Review", "Closed Won", "Closed Lost"),
        (10_000, 120_000), ("Existing Business",), 0.30,
    ),
    RecordTypeSpec(
        "Partner", "Partner", "Deals sourced and co-sold with partners",
        ("Prospecting", "Qualification", "Value Proposition", "Proposal/Price Quote", "Closed Won", "Closed Lost"),
        (2_000, 60_000), ("New Business", "Existing Business"), 0.15,
    ),
)

_FIRST_NAMES = [
    "Amelia", "Liam", "Olivia", "Noah", "Emma", "Mateo", "Ava", "Lucas", "Sofia", "Ethan", "Isabella",
    "Mason", "Mia", "Logan", "Charlotte", "James", "Harper", "Elijah", "Evelyn", "Aiden", "Priya", "Arjun",
    "Mei", "Hiroshi", "Fatima", "Omar", "Ingrid", "Lars", "Chloé", "Julien", "Greta", "Tomás", "Nadia",
    "Kwame", "Zoe", "Rafael", "Leila", "Daniel", "Hannah", "Samuel",
]
_LAST_NAMES = [
    "Hart", "Nguyen", "Okafor", "Schmidt", "Rossi", "García", "Kowalski", "Andersson", "Tanaka", "Patel",
    "Dubois", "Murphy", "Silva", "Cohen", "Novak", "Kim", "Haddad", "Jensen", "Moreau", "Brennan", "Costa",
    "Fischer", "Ivanova", "Larsen", "Mendes", "O'Neill", "Park", "Quinn", "Sato", "Walsh", "Yilmaz", "Zhang",
]
_COMPANY_FIRST = [
    "Northwind", "Bluebird", "Granite", "Summit", "Harbor", "Evergreen", "Copper", "Meridian", "Atlas",
    "Lumen", "Redwood", "Silverline", "Orchid", "Pioneer", "Beacon", "Cobalt", "Falcon", "Juniper",
    "Keystone", "Maple", "Nimbus", "Polaris", "Quartz", "Riverbend", "Sable", "Tidewater", "Vantage",
    "Willow", "Zephyr", "Aurora",
]
_COMPANY_SECOND = [
    "Analytics", "Logistics", "Health", "Robotics", "Foods", "Energy", "Software", "Capital", "Labs",
    "Systems", "Media", "Manufacturing", "Retail", "Networks", "Bio", "Outfitters", "Consulting",
    "Mobility", "Materials", "Security",
]
_COMPANY_SUFFIX = ["Inc.", "LLC", "Ltd", "GmbH", "Group", "Co.", "S.A.", "Corp."]
_INDUSTRY_OF = {
    "Analytics": "Technology", "Logistics": "Other", "Health": "Healthcare", "Robotics": "Manufacturing",
    "Foods": "Agriculture", "Energy": "Energy", "Software": "Technology", "Capital": "Finance",
    "Labs": "Technology", "Systems": "Technology", "Media": "Media", "Manufacturing": "Manufacturing",
    "Retail": "Retail", "Networks": "Communications", "Bio": "Healthcare", "Outfitters": "Retail",
    "Consulting": "Consulting", "Mobility": "Technology", "Materials": "Manufacturing", "Security": "Technology",
}
_CITIES = [
    ("San Francisco", "United States"), ("New York", "United States"), ("Chicago", "United States"),
    ("Austin", "United States"), ("Toronto", "Canada"), ("London", "United Kingdom"), ("Berlin", "Germany"),
    ("Paris", "France"), ("Madrid", "Spain"), ("Amsterdam", "Netherlands"), ("Stockholm", "Sweden"),
    ("Tokyo", "Japan"), ("Sydney", "Australia"), ("São Paulo", "Brazil"), ("Dublin", "Ireland"),
]
_TIME_ZONES = {
    "United States": "America/New_York", "Canada": "America/New_York", "United Kingdom": "Europe/London",
    "Germany": "Europe/Berlin", "France": "Europe/Paris", "Spain": "Europe/Paris", "Netherlands": "Europe/Berlin",
    "Sweden": "Europe/Berlin", "Japan": "Asia/Tokyo", "Australia": "Australia/Sydney", "Brazil": "GMT",
    "Ireland": "Europe/London",
}
_ACCOUNT_TYPES = ["Prospect", "Customer - Direct", "Customer - Channel", "Channel Partner / Reseller"]
_TITLES = [
    "CEO", "CFO", "CTO", "VP Sales", "VP Engineering", "Head of Operations", "Procurement Manager",
    "IT Director", "Product Manager", "Finance Director", "Operations Analyst", "Head of Marketing",
]
_ROLES = ["Decision Maker", "Economic Buyer", "Technical Buyer", "Evaluator", "Influencer", "Executive Sponsor",
          "Business User"]
_PRODUCTS = ["Platform", "Enterprise Suite", "Analytics Add-on", "Support Plan", "Starter Pack", "Data Connector",
             "Premium Seats", "Onboarding Services"]
_LEAD_SOURCES = ["Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"]
_NEXT_STEPS = ["Send proposal", "Schedule demo", "Security review", "Legal redlines", "Pricing call",
               "Executive alignment", ""]


@dataclass
class DemoData:
    """Records for both emulators (bulk-load format) and a summary."""

    salesforce: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    hubspot: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        counts = {f"salesforce.{name}": len(rows) for name, rows in self.salesforce.items()}
        counts.update({f"hubspot.{name}": len(rows) for name, rows in self.hubspot.items()})
        return counts


def _sf_datetime(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _slug(text: str) -> str:
    return "".join(char for char in text.lower() if char.isalnum())


def _ascii(text: str) -> str:
    table = str.maketrans({"é": "e", "á": "a", "í": "i", "ó": "o", "ú": "u", "ã": "a", "ç": "c", "'": ""})
    return text.translate(table)


def generate(size: int = 100, *, seed: int = 7, today: dt.date | None = None) -> DemoData:
    """A demo org with ``size`` opportunities."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be between {MIN_SIZE} and {MAX_SIZE}")
    rng = random.Random(seed)
    today = today or dt.datetime.now(dt.UTC).date()
    # The latest a record was touched: the start of ``today`` (UTC), never later than the moment the data is
    # loaded — a later stamp would be a change "in the future", picked up by some later poll.
    now = dt.datetime(today.year, today.month, today.day, tzinfo=dt.UTC)
    data = DemoData()
    sf = data.salesforce

    # --- people ----------------------------------------------------------------------------------
    owners: list[dict[str, Any]] = []
    used_names: set[tuple[str, str]] = set()
    while len(owners) < 10:
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        if (first, last) in used_names:
            continue
        used_names.add((first, last))
        email = f"{_slug(_ascii(first))}.{_slug(_ascii(last))}@{DEMO_DOMAIN}"
        city, country = rng.choice(_CITIES[:12])
        owners.append({
            "FirstName": first, "LastName": last, "Email": email, "Username": email,
            "Alias": (_slug(_ascii(first))[:1] + _slug(_ascii(last)))[:8],
            "Title": rng.choice(["Account Executive", "Senior Account Executive", "Sales Manager",
                                 "Partner Manager", "Renewals Manager"]),
            "CompanyName": "Dealsync Demo Corp", "IsActive": True,
            "TimeZoneSidKey": _TIME_ZONES[country], "LocaleSidKey": "en_US", "EmailEncodingKey": "UTF-8",
            "LanguageLocaleKey": "en_US",
        })
    sf["User"] = owners
    data.hubspot["owners"] = [
        {"email": owner["Email"], "firstName": owner["FirstName"], "lastName": owner["LastName"]} for owner in owners
    ]

    sf["RecordType"] = [
        {"Name": spec.name, "DeveloperName": spec.developer_name, "Description": spec.description,
         "SobjectType": "Opportunity", "IsActive": True, "Stages": list(spec.stages)}
        for spec in RECORD_TYPES
    ]

    # --- accounts and contacts -------------------------------------------------------------------
    account_count = max(5, round(size / 4))
    accounts: list[dict[str, Any]] = []
    domains: list[str] = []
    used_accounts: dict[str, int] = {}
    for _ in range(account_count):
        second = rng.choice(_COMPANY_SECOND)
        base = f"{rng.choice(_COMPANY_FIRST)} {second}"
        used_accounts[base] = used_accounts.get(base, 0) + 1
        if used_accounts[base] > 1:
            base = f"{base} {used_accounts[base]}"
        name = f"{base} {rng.choice(_COMPANY_SUFFIX)}"
        domain = f"{_slug(base)}.example"
        city, country = rng.choice(_CITIES)
        employees = int(rng.lognormvariate(5.0, 1.4)) + 5
        accounts.append({
            "Name": name, "Type": rng.choice(_ACCOUNT_TYPES), "Industry": _INDUSTRY_OF[second],
            "Website": f"https://www.{domain}",
            "Phone": f"+1 555 {rng.randrange(100, 999)} {rng.randrange(1000, 9999)}",
            "BillingCity": city, "BillingCountry": country, "NumberOfEmployees": employees,
            "AnnualRevenue": employees * rng.randrange(80, 400) * 1000,
            "OwnerId": f"@User:{rng.randrange(len(owners))}",
        })
        domains.append(domain)
    sf["Account"] = accounts

    contacts: list[dict[str, Any]] = []
    contacts_of: list[list[int]] = []
    used_emails: set[str] = set()
    for index, domain in enumerate(domains):
        mine: list[int] = []
        for _ in range(rng.choice([1, 2, 2, 3, 3, 4])):
            first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
            local = f"{_slug(_ascii(first))}.{_slug(_ascii(last))}"
            email = f"{local}@{domain}"
            suffix = 2
            while email in used_emails:
                email = f"{local}{suffix}@{domain}"
                suffix += 1
            used_emails.add(email)
            mine.append(len(contacts))
            contacts.append({
                "FirstName": first, "LastName": last, "Email": email, "Title": rng.choice(_TITLES),
                "Phone": f"+1 555 {rng.randrange(100, 999)} {rng.randrange(1000, 9999)}",
                "AccountId": f"@Account:{index}", "OwnerId": accounts[index]["OwnerId"],
            })
        contacts_of.append(mine)
    sf["Contact"] = contacts

    # --- opportunities and contact roles ---------------------------------------------------------
    opportunities: list[dict[str, Any]] = []
    roles: list[dict[str, Any]] = []
    shares = [spec.share for spec in RECORD_TYPES]
    for number in range(size):
        account = rng.randrange(account_count)
        spec_index = rng.choices(range(len(RECORD_TYPES)), weights=shares)[0]
        spec = RECORD_TYPES[spec_index]
        outcome = rng.random()
        open_stages = [stage for stage in spec.stages if not stage.startswith("Closed")]
        if outcome < 0.20:
            stage = "Closed Won"
        elif outcome < 0.32:
            stage = "Closed Lost"
        else:
            stage = rng.choice(open_stages)
        created = now - dt.timedelta(days=rng.randrange(1, 540), minutes=rng.randrange(0, 1440))
        if stage.startswith("Closed"):
            close = created.date() + dt.timedelta(days=rng.randrange(14, 180))
            close = min(close, today - dt.timedelta(days=1))
            close = max(close, created.date())
        else:
            close = today + dt.timedelta(days=rng.randrange(7, 270))
        low, high = spec.amount_range
        amount = round(rng.uniform(low, high), -2)
        owner = accounts[account]["OwnerId"] if rng.random() < 0.8 else f"@User:{rng.randrange(len(owners))}"
        product = rng.choice(_PRODUCTS)
        name = f"{accounts[account]['Name']} - {product}"
        if spec.developer_name == "Renewal":
            name = f"{accounts[account]['Name']} - Renewal {close.year}"
        opportunity: dict[str, Any] = {
            "Name": f"{name} #{number + 1}"[:120],
            "AccountId": f"@Account:{account}",
            "RecordTypeId": f"@RecordType:{spec_index}",
            "StageName": stage,
            "CloseDate": close.isoformat(),
            "Amount": amount,
            "Type": rng.choice(spec.types),
            "LeadSource": rng.choice(_LEAD_SOURCES),
            "OwnerId": owner,
            "CreatedDate": _sf_datetime(created),
            "LastModifiedDate": _sf_datetime(min(created + dt.timedelta(days=rng.randrange(0, 30)), now)),
        }
        opportunity["SystemModstamp"] = opportunity["LastModifiedDate"]
        next_step = rng.choice(_NEXT_STEPS)
        if next_step and not stage.startswith("Closed"):
            opportunity["NextStep"] = next_step
        if rng.random() < 0.3:
            opportunity["Description"] = (
                f"{product} for {accounts[account]['Name']}; sourced via {opportunity['LeadSource']}.")
        opportunities.append(opportunity)

        candidates = contacts_of[account]
        count = min(len(candidates), rng.choices([0, 1, 2, 3], weights=[15, 40, 30, 15])[0])
        for position, contact in enumerate(rng.sample(candidates, count)):
            roles.append({
                "OpportunityId": f"@Opportunity:{number}",
                "ContactId": f"@Contact:{contact}",
                "Role": rng.choice(_ROLES),
                "IsPrimary": position == 0,
            })
    sf["Opportunity"] = opportunities
    sf["OpportunityContactRole"] = roles
    return data


@dataclass
class LoadedDemo:
    """What a demo load created: counts and the ids the emulators gave the records."""

    summary: dict[str, int] = field(default_factory=dict)
    salesforce_ids: dict[str, list[str]] = field(default_factory=dict)
    hubspot_ids: dict[str, list[str]] = field(default_factory=dict)


def load_into(crms: CrmEmulators, data: DemoData) -> LoadedDemo:
    """Bulk-load demo data into both emulators (no change notifications are sent)."""
    salesforce_ids = crms.salesforce.load(data.salesforce)
    hubspot_ids = crms.hubspot.load(data.hubspot)
    return LoadedDemo(data.summary(), salesforce_ids, hubspot_ids)
