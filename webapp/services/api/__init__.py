"""The JSON API's shapes: pydantic schemas for /api/v1, and the OpenAPI document built from
the app."""
