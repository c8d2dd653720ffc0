"""The sync services: one entry function per handler, composed of the store, mapping and clients."""
