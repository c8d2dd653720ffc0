"""Objects and fields of the emulated org, and their describe shapes.

The schema is rebuilt when the org's shape changes (multi-currency on or off, opportunity record
types appearing), because Salesforce exposes ``CurrencyIsoCode`` only in multi-currency orgs and
``Opportunity.RecordTypeId`` only once the object has record types.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dealsync_local.salesforce.ids import KEY_PREFIXES

STRING_TYPES = frozenset(
    {"string", "textarea", "picklist", "multipicklist", "email", "phone", "url", "combobox"}
)
ID_TYPES = frozenset({"id", "reference"})
NUMBER_TYPES = frozenset({"double", "currency", "percent", "int"})

_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "currency": "xsd:double",
    "double": "xsd:double",
    "percent": "xsd:double",
    "int": "xsd:int",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}

FORECAST_CATEGORY_LABELS = {
    "Omitted": "Omitted",
    "Pipeline": "Pipeline",
    "BestCase": "Best Case",
    "Forecast": "Commit",
    "Closed": "Closed",
}
FORECAST_CATEGORY_BY_LABEL = {label: value for value, label in FORECAST_CATEGORY_LABELS.items()}

# Salesforce's standard sales stages: (MasterLabel, DefaultProbability, IsClosed, IsWon, ForecastCategory)
DEFAULT_STAGES: tuple[tuple[str, float, bool, bool, str], ...] = (
    ("Prospecting", 10.0, False, False, "Pipeline"),
    ("Qualification", 10.0, False, False, "Pipeline"),
    ("Needs Analysis", 20.0, False, False, "Pipeline"),
    ("Value Proposition", 50.0, False, False, "Pipeline"),
    ("Id. Decision Makers", 60.0, False, False, "Pipeline"),
    ("Perception Analysis", 70.0, False, False, "Pipeline"),
    ("Proposal/Price Quote", 75.0, False, False, "Pipeline"),
    ("Negotiation/Review", 90.0, False, False, "Pipeline"),
    ("Closed Won", 100.0, True, True, "Closed"),
    ("Closed Lost", 0.0, True, False, "Omitted"),
)

DEFAULT_PICKLISTS: dict[str, list[str]] = {
    "Opportunity.Type": ["Existing Business", "New Business"],
    "Opportunity.LeadSource": ["Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"],
    "OpportunityContactRole.Role": [
        "Business User", "Decision Maker", "Economic Buyer", "Economic Decision Maker", "Evaluator",
        "Executive Sponsor", "Influencer", "Technical Buyer", "Other",
    ],
    "Account.Type": [
        "Prospect", "Customer - Direct", "Customer - Channel", "Channel Partner / Reseller",
        "Installation Partner", "Technology Partner", "Other",
    ],
    "Account.Industry": [
        "Agriculture", "Banking", "Communications", "Consulting", "Education", "Energy", "Finance",
        "Healthcare", "Manufacturing", "Media", "Retail", "Technology", "Other",
    ],
    "Contact.Salutation": ["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."],
    "RecordType.SobjectType": ["Account", "Contact", "Opportunity"],
    "BusinessProcess.TableEnumOrId": ["Opportunity"],
}


@dataclass(frozen=True)
class FieldDef:
    name: str
    type: str
    label: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    digits: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    required: bool = False  # must be given on create (and cannot be nulled)
    defaulted_on_create: bool = False
    calculated: bool = False
    external_id: bool = False
    unique: bool = False
    id_lookup: bool = False
    name_field: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    cascade_delete: bool = False
    restricted_picklist: bool = False
    filterable: bool = True
    sortable: bool = True
    custom: bool = False
    default_value: Any = None

    @property
    def is_string(self) -> bool:
        return self.type in STRING_TYPES

    @property
    def is_id(self) -> bool:
        return self.type in ID_TYPES

    @property
    def is_number(self) -> bool:
        return self.type in NUMBER_TYPES


@dataclass(frozen=True)
class ChildRelationship:
    name: str
    child: str
    field: str
    cascade_delete: bool


@dataclass
class ObjectDef:
    name: str
    label: str
    label_plural: str
    fields: dict[str, FieldDef]
    createable: bool = True
    updateable: bool = True
    deletable: bool = True
    undeletable: bool = True
    replicateable: bool = True
    triggerable: bool = True
    child_relationships: list[ChildRelationship] = field(default_factory=list)
    fields_ci: dict[str, str] = field(default_factory=dict)
    relationships_ci: dict[str, FieldDef] = field(default_factory=dict)
    children_ci: dict[str, ChildRelationship] = field(default_factory=dict)
    required_fields: tuple[str, ...] = ()
    reference_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.required_fields = tuple(name for name, f in self.fields.items() if f.required)
        self.reference_fields = tuple(name for name, f in self.fields.items() if f.type == "reference")
        self.fields_ci = {name.lower(): name for name in self.fields}
        self.blank: dict[str, Any] = {
            name: (bool(f.default_value) if f.type == "boolean" else None) for name, f in self.fields.items()
        }
        self.relationships_ci = {
            f.relationship_name.lower(): f for f in self.fields.values() if f.relationship_name
        }

    @property
    def key_prefix(self) -> str:
        return KEY_PREFIXES[self.name]

    def field(self, name: str) -> FieldDef | None:
        exact = self.fields.get(name)
        if exact is not None:
            return exact
        canonical = self.fields_ci.get(name.lower())
        return self.fields[canonical] if canonical else None

    def add_child(self, relationship: ChildRelationship) -> None:
        self.child_relationships.append(relationship)
        self.children_ci[relationship.name.lower()] = relationship

    def add_field(self, fdef: FieldDef) -> None:
        """A field added after the object was built (a custom field the admin created)."""
        self.fields[fdef.name] = fdef
        self.__post_init__()


# --- field constructors -------------------------------------------------------------------------
def _id() -> FieldDef:
    return FieldDef("Id", "id", "Record ID", length=18, nillable=False, createable=False,
                    updateable=False, defaulted_on_create=True, id_lookup=True)


def _ref(name: str, label: str, to: str, relationship: str | None, *, nillable: bool = True,
         createable: bool = True, updateable: bool = True, required: bool = False,
         defaulted: bool = False, cascade: bool = False) -> FieldDef:
    return FieldDef(name, "reference", label, length=18, nillable=nillable, createable=createable,
                    updateable=updateable, required=required, defaulted_on_create=defaulted,
                    reference_to=(to,), relationship_name=relationship, cascade_delete=cascade)


def _str(name: str, label: str, length: int, *, kind: str = "string", required: bool = False,
         createable: bool = True, updateable: bool = True, filterable: bool = True,
         external_id: bool = False, unique: bool = False, name_field: bool = False,
         custom: bool = False, id_lookup: bool = False) -> FieldDef:
    sortable = filterable and kind != "textarea"
    return FieldDef(name, kind, label, length=length, nillable=not required, createable=createable,
                    updateable=updateable, required=required, filterable=filterable, sortable=sortable,
                    external_id=external_id, unique=unique, name_field=name_field, custom=custom,
                    id_lookup=id_lookup or external_id or name_field)


def _picklist(name: str, label: str, *, required: bool = False, restricted: bool = False,
              createable: bool = True, updateable: bool = True, defaulted: bool = False,
              length: int = 255) -> FieldDef:
    return FieldDef(name, "picklist", label, length=length, nillable=not required,
                    createable=createable, updateable=updateable, required=required,
                    restricted_picklist=restricted, defaulted_on_create=defaulted)


def _bool(name: str, label: str, *, createable: bool = True, updateable: bool = True,
          default: bool = False) -> FieldDef:
    return FieldDef(name, "boolean", label, nillable=False, createable=createable,
                    updateable=updateable, defaulted_on_create=True, default_value=default)


def _num(name: str, label: str, kind: str, precision: int, scale: int, *, createable: bool = True,
         updateable: bool = True, calculated: bool = False, defaulted: bool = False) -> FieldDef:
    return FieldDef(name, kind, label, precision=precision, scale=scale,
                    digits=precision if kind == "int" else 0, createable=createable,
                    updateable=updateable, calculated=calculated, defaulted_on_create=defaulted)


def _date(name: str, label: str, *, required: bool = False, createable: bool = True,
          updateable: bool = True) -> FieldDef:
    return FieldDef(name, "date", label, nillable=not required, createable=createable,
                    updateable=updateable, required=required)


def _system_datetime(name: str, label: str) -> FieldDef:
    return FieldDef(name, "datetime", label, nillable=False, createable=False, updateable=False,
                    defaulted_on_create=True)


def _audit(with_deleted: bool = True) -> list[FieldDef]:
    fields = []
    if with_deleted:
        fields.append(_bool("IsDeleted", "Deleted", createable=False, updateable=False))
    fields += [
        _system_datetime("CreatedDate", "Created Date"),
        _ref("CreatedById", "Created By ID", "User", "CreatedBy", nillable=False, createable=False,
             updateable=False, defaulted=True),
        _system_datetime("LastModifiedDate", "Last Modified Date"),
        _ref("LastModifiedById", "Last Modified By ID", "User", "LastModifiedBy", nillable=False,
             createable=False, updateable=False, defaulted=True),
        _system_datetime("SystemModstamp", "System Modstamp"),
    ]
    return fields


def _owner() -> FieldDef:
    return _ref("OwnerId", "Owner ID", "User", "Owner", nillable=False, defaulted=True)


def _currency_field(multi_currency: bool, label: str) -> list[FieldDef]:
    if not multi_currency:
        return []
    return [_picklist("CurrencyIsoCode", label, restricted=True, defaulted=True, length=3)]


def _object(name: str, label: str, plural: str, fields: Iterable[FieldDef], *, createable: bool = True,
            updateable: bool = True, deletable: bool = True, undeletable: bool = True,
            replicateable: bool = True, triggerable: bool = True) -> ObjectDef:
    return ObjectDef(name, label, plural, {f.name: f for f in fields}, createable=createable,
                     updateable=updateable, deletable=deletable, undeletable=undeletable,
                     replicateable=replicateable, triggerable=triggerable)


def build_schema(*, multi_currency: bool, opportunity_record_types: bool) -> dict[str, ObjectDef]:
    """All objects of the org, keyed by API name."""
    objects = [
        _object("Organization", "Organization", "Organizations", [
            _id(),
            _str("Name", "Name", 80, required=True, name_field=True),
            _str("Division", "Division", 80),
            _str("Country", "Country", 80),
            _picklist("OrganizationType", "Edition", createable=False, updateable=False),
            _str("InstanceName", "Instance Name", 5, createable=False, updateable=False),
            _bool("IsSandbox", "Is Sandbox", createable=False, updateable=False),
            _picklist("DefaultLocaleSidKey", "Locale"),
            _picklist("LanguageLocaleKey", "Language"),
            _picklist("TimeZoneSidKey", "Time Zone"),
            *( [_picklist("DefaultCurrencyIsoCode", "Currency", length=3)] if multi_currency else [] ),
            *_audit(with_deleted=False),
        ], createable=False, updateable=False, deletable=False, undeletable=False, replicateable=False,
            triggerable=False),
        _object("User", "User", "Users", [
            _id(),
            _str("Username", "Username", 80, required=True, id_lookup=True),
            _str("LastName", "Last Name", 80, required=True),
            _str("FirstName", "First Name", 40),
            _str("Name", "Full Name", 121, createable=False, updateable=False, name_field=True),
            _str("Email", "Email", 128, kind="email", required=True),
            _str("Alias", "Alias", 8, required=True),
            _str("Title", "Title", 80),
            _str("CompanyName", "Company Name", 80),
            _bool("IsActive", "Active", default=True),
            _picklist("UserType", "User Type", createable=False, updateable=False, defaulted=True),
            _picklist("TimeZoneSidKey", "Time Zone", required=True, restricted=True, length=40),
            _picklist("LocaleSidKey", "Locale", required=True, restricted=True, length=40),
            _picklist("EmailEncodingKey", "Email Encoding", required=True, restricted=True, length=40),
            _picklist("LanguageLocaleKey", "Language", required=True, restricted=True, length=40),
            *_currency_field(multi_currency, "User Currency"),
            *_audit(with_deleted=False),
        ], deletable=False, undeletable=False),
        _object("Account", "Account", "Accounts", [
            _id(),
            *_audit()[:1],
            _ref("ParentId", "Parent Account ID", "Account", "Parent"),
            _str("Name", "Account Name", 255, required=True, name_field=True),
            _picklist("Type", "Account Type", length=255),
            _picklist("Industry", "Industry"),
            _str("Website", "Website", 255, kind="url"),
            _str("Phone", "Account Phone", 40, kind="phone"),
            _str("BillingCity", "Billing City", 40),
            _str("BillingCountry", "Billing Country", 80),
            _num("AnnualRevenue", "Annual Revenue", "currency", 18, 0),
            _num("NumberOfEmployees", "Employees", "int", 8, 0),
            _str("Description", "Account Description", 32000, kind="textarea", filterable=False),
            *_currency_field(multi_currency, "Account Currency"),
            _owner(),
            *_audit()[1:],
        ]),
        _object("Contact", "Contact", "Contacts", [
            _id(),
            *_audit()[:1],
            _ref("AccountId", "Account ID", "Account", "Account"),
            _str("LastName", "Last Name", 80, required=True),
            _str("FirstName", "First Name", 40),
            _picklist("Salutation", "Salutation", length=40),
            _str("Name", "Full Name", 121, createable=False, updateable=False, name_field=True),
            _str("Title", "Title", 128),
            _str("Email", "Email", 80, kind="email", id_lookup=True),
            _str("Phone", "Business Phone", 40, kind="phone"),
            _str("MobilePhone", "Mobile Phone", 40, kind="phone"),
            _str("Description", "Contact Description", 32000, kind="textarea", filterable=False),
            *_currency_field(multi_currency, "Contact Currency"),
            _owner(),
            *_audit()[1:],
        ]),
        _object("Opportunity", "Opportunity", "Opportunities", [
            _id(),
            *_audit()[:1],
            _ref("AccountId", "Account ID", "Account", "Account"),
            *( [_ref("RecordTypeId", "Record Type ID", "RecordType", "RecordType", defaulted=True)]
               if opportunity_record_types else [] ),
            _bool("IsPrivate", "Private"),
            _str("Name", "Name", 120, required=True, name_field=True),
            _str("Description", "Description", 32000, kind="textarea", filterable=False),
            _picklist("StageName", "Stage", required=True),
            _num("Amount", "Amount", "currency", 18, 2),
            _num("Probability", "Probability (%)", "percent", 3, 0, defaulted=True),
            _num("ExpectedRevenue", "Expected Amount", "currency", 18, 2, createable=False,
                 updateable=False, calculated=True),
            _num("TotalOpportunityQuantity", "Quantity", "double", 18, 2),
            _date("CloseDate", "Close Date", required=True),
            _picklist("Type", "Opportunity Type"),
            _str("NextStep", "Next Step", 255),
            _picklist("LeadSource", "Lead Source"),
            _bool("IsClosed", "Closed", createable=False, updateable=False),
            _bool("IsWon", "Won", createable=False, updateable=False),
            _picklist("ForecastCategory", "Forecast Category", restricted=True, createable=False,
                      updateable=False, defaulted=True, length=40),
            _picklist("ForecastCategoryName", "Forecast Category", restricted=True, defaulted=True),
            *_currency_field(multi_currency, "Opportunity Currency"),
            _ref("ContactId", "Contact ID", "Contact", "Contact", updateable=False),
            _bool("HasOpportunityLineItem", "Has Line Item", createable=False, updateable=False),
            _owner(),
            *_audit()[1:],
            _date("LastActivityDate", "Last Activity", createable=False, updateable=False),
            _str("HubSpot_Deal_Id__c", "HubSpot Deal Id", 100, external_id=True, unique=True,
                 custom=True),
        ]),
        _object("OpportunityContactRole", "Opportunity Contact Role", "Opportunity Contact Role", [
            _id(),
            _ref("OpportunityId", "Opportunity ID", "Opportunity", "Opportunity", nillable=False,
                 updateable=False, required=True, cascade=True),
            _ref("ContactId", "Contact ID", "Contact", "Contact", nillable=False, required=True),
            _picklist("Role", "Role"),
            _bool("IsPrimary", "Primary"),
            *_currency_field(multi_currency, "Currency ISO Code"),
            *_audit(),
        ]),
        # Field history of the fields an org tracks (store.TRACKED_OPPORTUNITY_FIELDS): one row per change.
        _object("OpportunityFieldHistory", "Opportunity Field History", "Opportunity Field History", [
            _id(),
            _ref("OpportunityId", "Opportunity ID", "Opportunity", "Opportunity", nillable=False, createable=False,
                 updateable=False),
            _picklist("Field", "Changed Field", createable=False, updateable=False, restricted=True),
            _picklist("DataType", "Data Type", createable=False, updateable=False, restricted=True, length=40),
            _str("OldValue", "Old Value", 255, createable=False, updateable=False,
                 filterable=False),
            _str("NewValue", "New Value", 255, createable=False, updateable=False,
                 filterable=False),
            _bool("IsDeleted", "Deleted", createable=False, updateable=False),
            _system_datetime("CreatedDate", "Created Date"),
            _ref("CreatedById", "Created By ID", "User", "CreatedBy", nillable=False, createable=False,
                 updateable=False, defaulted=True),
        ], createable=False, updateable=False, deletable=False, undeletable=False, triggerable=False),
        _object("OpportunityStage", "Opportunity Stage", "Opportunity Stages", [
            _id(),
            _str("MasterLabel", "Master Label", 255, createable=False, updateable=False),
            _str("ApiName", "Api Name", 255, createable=False, updateable=False, id_lookup=True),
            _bool("IsActive", "Is Active", createable=False, updateable=False),
            _num("SortOrder", "Sort Order", "int", 9, 0, createable=False, updateable=False),
            _bool("IsClosed", "Closed", createable=False, updateable=False),
            _bool("IsWon", "Won", createable=False, updateable=False),
            _picklist("ForecastCategory", "Forecast Category", createable=False, updateable=False),
            _picklist("ForecastCategoryName", "Forecast Category Name", createable=False,
                      updateable=False),
            _num("DefaultProbability", "Probability (%)", "percent", 3, 0, createable=False,
                 updateable=False),
            _str("Description", "Description", 255, createable=False, updateable=False),
            *_audit(with_deleted=False),
        ], createable=False, updateable=False, deletable=False, undeletable=False, triggerable=False),
        _object("BusinessProcess", "Business Process", "Business Processes", [
            _id(),
            _str("Name", "Name", 80, required=True, name_field=True),
            _str("NamespacePrefix", "Namespace Prefix", 15, createable=False, updateable=False),
            _str("Description", "Description", 255),
            _picklist("TableEnumOrId", "Entity Enumeration Or ID", restricted=True, required=True,
                      length=40),
            _bool("IsActive", "Active"),
            *_audit(with_deleted=False),
        ], createable=False, updateable=False, deletable=False, undeletable=False, triggerable=False),
        _object("RecordType", "Record Type", "Record Types", [
            _id(),
            _str("Name", "Name", 80, required=True, name_field=True),
            _str("DeveloperName", "Record Type Name", 80, required=True),
            _str("NamespacePrefix", "Namespace Prefix", 15, createable=False, updateable=False),
            _str("Description", "Description", 255),
            _ref("BusinessProcessId", "Business Process ID", "BusinessProcess", "BusinessProcess"),
            _picklist("SobjectType", "SObject Type Name", restricted=True, required=True, length=40),
            _bool("IsActive", "Active"),
            *_audit(with_deleted=False),
        ], createable=False, updateable=False, deletable=False, undeletable=False, triggerable=False),
    ]
    schema = {obj.name: obj for obj in objects}
    for obj in objects:
        for f in obj.fields.values():
            if f.type != "reference" or f.name in ("CreatedById", "LastModifiedById"):
                continue
            child_name = _CHILD_RELATIONSHIP_NAMES.get((obj.name, f.name))
            if child_name is None:
                continue
            schema[f.reference_to[0]].add_child(ChildRelationship(child_name, obj.name, f.name,
                                                                  f.cascade_delete))
    # Account deletion takes its contacts and opportunities along, as in Salesforce.
    schema["Account"].child_relationships = [
        ChildRelationship(rel.name, rel.child, rel.field,
                          rel.cascade_delete or rel.child in ("Contact", "Opportunity"))
        for rel in schema["Account"].child_relationships
    ]
    schema["Account"].children_ci = {rel.name.lower(): rel for rel in schema["Account"].child_relationships}
    return schema


_CHILD_RELATIONSHIP_NAMES: dict[tuple[str, str], str] = {
    ("Account", "ParentId"): "ChildAccounts",
    ("Contact", "AccountId"): "Contacts",
    ("Opportunity", "AccountId"): "Opportunities",
    ("Opportunity", "OwnerId"): "Opportunities",
    ("Opportunity", "ContactId"): "Opportunities",
    ("OpportunityContactRole", "OpportunityId"): "OpportunityContactRoles",
    ("OpportunityContactRole", "ContactId"): "OpportunityContactRoles",
    ("RecordType", "BusinessProcessId"): "RecordTypes",
}


# --- describe -----------------------------------------------------------------------------------
def picklist_entry(value: str, label: str | None = None, *, default: bool = False,
                   active: bool = True) -> dict[str, Any]:
    return {"active": active, "defaultValue": default, "label": label or value, "validFor": None,
            "value": value}


def describe_field(f: FieldDef, picklist_values: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    is_text = f.is_string
    byte_length = f.length * 3 if (is_text or f.is_id) else 0
    return {
        "aggregatable": f.type not in ("textarea",),
        "aiPredictionField": False,
        "autoNumber": False,
        "byteLength": byte_length,
        "calculated": f.calculated,
        "calculatedFormula": None,
        "cascadeDelete": f.cascade_delete,
        "caseSensitive": False,
        "compoundFieldName": None,
        "controllerName": None,
        "createable": f.createable,
        "custom": f.custom,
        "defaultValue": f.default_value if f.type == "boolean" else None,
        "defaultValueFormula": None,
        "defaultedOnCreate": f.defaulted_on_create,
        "dependentPicklist": False,
        "deprecatedAndHidden": False,
        "digits": f.digits,
        "displayLocationInDecimal": False,
        "encrypted": False,
        "externalId": f.external_id,
        "extraTypeInfo": "plaintextarea" if f.type == "textarea" else None,
        "filterable": f.filterable,
        "filteredLookupInfo": None,
        "formulaTreatNullNumberAsZero": False,
        "groupable": f.type not in ("textarea", "double", "currency", "percent", "datetime"),
        "highScaleNumber": False,
        "htmlFormatted": False,
        "idLookup": f.id_lookup,
        "inlineHelpText": None,
        "label": f.label,
        "length": f.length if (is_text or f.is_id) else 0,
        "mask": None,
        "maskType": None,
        "name": f.name,
        "nameField": f.name_field,
        "namePointing": False,
        "nillable": f.nillable,
        "permissionable": f.nillable and (f.createable or f.updateable) and not f.required,
        "picklistValues": list(picklist_values),
        "polymorphicForeignKey": False,
        "precision": f.precision if f.type in ("currency", "double", "percent") else 0,
        "queryByDistance": False,
        "referenceTargetField": None,
        "referenceTo": list(f.reference_to),
        "relationshipName": f.relationship_name,
        "relationshipOrder": None,
        "restrictedDelete": False,
        "restrictedPicklist": f.restricted_picklist,
        "scale": f.scale if f.type in ("currency", "double", "percent") else 0,
        "searchPrefilterable": f.type == "reference",
        "soapType": _SOAP_TYPES.get(f.type, "xsd:string"),
        "sortable": f.sortable,
        "type": f.type,
        "unique": f.unique,
        "updateable": f.updateable,
        "writeRequiresMasterRead": False,
    }


def object_urls(obj: ObjectDef, version: str) -> dict[str, str]:
    base = f"/services/data/v{version}/sobjects/{obj.name}"
    return {
        "compactLayouts": f"{base}/describe/compactLayouts",
        "rowTemplate": f"{base}/{{ID}}",
        "approvalLayouts": f"{base}/describe/approvalLayouts",
        "defaultValues": f"{base}/defaultValues?recordTypeId&fields",
        "describe": f"{base}/describe",
        "quickActions": f"{base}/quickActions",
        "layouts": f"{base}/describe/layouts",
        "sobject": base,
    }


def object_summary(obj: ObjectDef, version: str) -> dict[str, Any]:
    return {
        "activateable": False,
        "associateEntityType": None,
        "associateParentEntity": None,
        "createable": obj.createable,
        "custom": False,
        "customSetting": False,
        "deepCloneable": False,
        "deletable": obj.deletable,
        "deprecatedAndHidden": False,
        "feedEnabled": False,
        "hasSubtypes": False,
        "isInterface": False,
        "isSubtype": False,
        "keyPrefix": obj.key_prefix,
        "label": obj.label,
        "labelPlural": obj.label_plural,
        "layoutable": obj.createable,
        "mergeable": obj.name in ("Account", "Contact"),
        "mruEnabled": obj.createable,
        "name": obj.name,
        "queryable": True,
        "replicateable": obj.replicateable,
        "retrieveable": True,
        "searchable": obj.createable,
        "triggerable": obj.triggerable,
        "undeletable": obj.undeletable,
        "updateable": obj.updateable,
        "urls": object_urls(obj, version),
    }


def describe_object(obj: ObjectDef, version: str, fields: list[dict[str, Any]],
                    record_type_infos: list[dict[str, Any]]) -> dict[str, Any]:
    described = object_summary(obj, version)
    described.update({
        "actionOverrides": [],
        "childRelationships": [
            {
                "cascadeDelete": rel.cascade_delete,
                "childSObject": rel.child,
                "deprecatedAndHidden": False,
                "field": rel.field,
                "junctionIdListNames": [],
                "junctionReferenceTo": [],
                "relationshipName": rel.name,
                "restrictedDelete": False,
            }
            for rel in obj.child_relationships
        ],
        "compactLayoutable": obj.createable,
        "defaultImplementation": None,
        "extendedBy": None,
        "extendsInterfaces": None,
        "fields": fields,
        "implementedBy": None,
        "implementsInterfaces": None,
        "listviewable": None,
        "lookupLayoutable": None,
        "namedLayoutInfos": [],
        "networkScopeFieldName": None,
        "recordTypeInfos": record_type_infos,
        "searchLayoutable": obj.createable,
        "sobjectDescribeOption": "FULL",
        "supportedScopes": [{"label": "All opportunities", "name": "everything"}]
        if obj.name == "Opportunity" else [],
    })
    return dict(sorted(described.items()))
