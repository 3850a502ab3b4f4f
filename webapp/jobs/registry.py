"""Imports every module that registers job handlers, so the worker knows them all."""

from ..services import demo_jobs, importer  # noqa: F401
