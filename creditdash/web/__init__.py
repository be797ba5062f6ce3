"""Browser HTTP outside Reflex: document downloads, payment webhooks and the sandbox checkout
page, and the session cookie's two routes. Imports the services, never the states or pages."""
