"""Business rules as plain functions, tested without HTTP, in packages by area.

The packages form layers, top first; a package imports only those below it (``lint-imports``
checks this, so there is no cycle between them):

- ``api``, ``checking``, ``operations``, ``admin``, ``people``: used by views and commands only;
- ``reporting``: reports and exports;
- ``review``: the queue and review decisions;
- ``training``: training, scoring and measuring model versions;
- ``importing``: getting images in, and the pixel cache;
- ``evidence``: what an image's own bytes say about it;
- ``records`` (labels, versions, audit trail, look-up errors) and ``storage`` (the image store).
"""
