"""The ``heatmap`` job: Grad-CAM of one image under one model version, written to the cache.

Runs in the job worker, which has PyTorch loaded anyway; the web process only reads the file
(see :mod:`webapp.services.review.heatmaps`).
"""

from __future__ import annotations

from typing import Any

from ...extensions import db
from ...jobs import JobContext, handler
from ...models import Image, ModelVersion
from . import heatmaps


@handler(heatmaps.KIND)
def compute_heatmap(context: JobContext) -> dict[str, Any]:
    """Compute and cache the heatmap named by the job's ``image_id`` and ``model_version_id``."""
    from model.explain import gradcam, heat_png

    from ..importing.pixels import pixels_for
    from ..training.scoring import get_predictor

    image = db.session.get(Image, int(context.params["image_id"]))
    version = db.session.get(ModelVersion, int(context.params["model_version_id"]))
    if image is None or version is None:
        raise ValueError("the image or the model version no longer exists")
    path = heatmaps.cache_path(image.id, version)
    if heatmaps.cached(image.id, version) is None:
        context.progress(stage="computing")
        predictor = get_predictor(version)
        pixels = pixels_for(predictor.meta, [image.id])[0]
        data = heat_png(gradcam(predictor.model, predictor.meta, pixels))
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{context.job_id}.tmp")
        temporary.write_bytes(data)
        temporary.replace(path)  # readers see the whole file or none
    return {"image_id": image.id, "model_version_id": version.id, "bytes": path.stat().st_size}
