"""The operator's states, one module per admin page; every handler is an @admin_event."""
