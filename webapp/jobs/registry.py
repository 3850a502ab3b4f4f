"""Every kind of job, and the module whose ``@handler`` runs it.

The modules are imported only when a job of their kind first runs in a process: a web server
or a CLI command that only submits jobs never loads PyTorch or scikit-learn (seconds of start-up
and hundreds of MB per process).
"""

from .core import declare

declare("import", "webapp.services.importer", resumable=True)
declare("train", "webapp.services.training", singleton=True)
declare("predict", "webapp.services.scoring", resumable=True)
declare("oof", "webapp.services.oof_training", singleton=True)
declare("report", "webapp.services.report_jobs")
declare("heatmap", "webapp.services.heatmap_jobs")
declare("check", "webapp.services.checking.job")
declare("sleep", "webapp.services.demo_jobs")
declare("fail", "webapp.services.demo_jobs")
