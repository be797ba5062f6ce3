"""The customer portal's states, one module per page (and the public pricing and sign-in)."""
