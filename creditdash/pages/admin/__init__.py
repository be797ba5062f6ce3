"""The operator's pages, one module per admin page, each beside its state in state/admin/."""
