"""Pure mapping between Salesforce Opportunities and HubSpot deals (DESIGN 1.2, 1.3, 1.5, 1.7).

No I/O here: no clocks, no SDKs, no boto3. Callers read both CRMs, pass plain values in and apply the
patches that come out.

- `values`: canonical text for every field type, and the converters to and from each CRM.
- `compat`: HubSpot's type-compatibility table, checked when a custom mapping is created.
- `fields`: the default mappings and `FieldSpec`s (mapping + type information).
- `rules`: the per-field sync decision with shadows, and `decide_record` over all fields.
- `stages`: pipelines for record types, and the stage lookups both ways.
- `owners`: owner matching by e-mail.
- `rollups`: contact rollup properties and lifecycle stage.
"""
