"""Importing images: reading sources (folders, archives), the worker processes that hash, check,
decode and store, the batched database writes, web uploads, the import report, and the pixel
cache the model reads (its file format and its filling from the stored originals)."""
