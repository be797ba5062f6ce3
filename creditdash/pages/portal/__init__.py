"""The customer portal's pages (and the public pricing and sign-in pages), one per state module."""
