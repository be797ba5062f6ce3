"""Invoicing: billing profiles, tax rules and snapshots, numbered invoices, PDFs, statements."""
