"""The local world: Salesforce and HubSpot emulators and a local runtime for the handlers (DESIGN §4)."""
