"""Every kind of job, and the module whose ``@handler`` runs it.

The modules are imported only when a job of their kind first runs in a process: a web server
or a CLI command that only submits jobs never loads PyTorch or scikit-learn (seconds of start-up
and hundreds of MB per process).
"""

from .core import declare

declare("import", "webapp.services.importing.importer", resumable=True)
declare("train", "webapp.services.training.training", singleton=True)
declare("predict", "webapp.services.training.scoring", resumable=True)
declare("oof", "webapp.services.training.oof_training", singleton=True)
declare("report", "webapp.services.reporting.report_jobs")
declare("heatmap", "webapp.services.review.heatmap_jobs")
declare("check", "webapp.services.checking.job")
declare("sleep", "webapp.services.operations.demo_jobs")
declare("fail", "webapp.services.operations.demo_jobs")
