"""Imports every module that registers job handlers, so the worker knows them all."""

from ..services import demo_jobs, importer, report_jobs, scoring, training  # noqa: F401
