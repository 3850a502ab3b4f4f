"""People and access: accounts and roles, API tokens, and login throttling."""
