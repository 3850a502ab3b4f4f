"""Business rules as plain functions, tested without HTTP."""
