"""The model catalog: providers and their secrets, public models with the prices customers pay,
routes with upstream costs, the margin review, scheduled price changes, the YAML importer and
the base-URL guard. The gateway reads it through proxy/snapshot.py; admins edit it through
pricing.py and providers.py."""
