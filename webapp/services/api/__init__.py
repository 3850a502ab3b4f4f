"""The JSON API: pydantic schemas for /api/v1, the lists and records it reads, and the OpenAPI
document built from the app."""
