"""PyTorch side of RealFake Review: a ResNet18 that calls images REAL (0) or FAKE (1).

Pure PyTorch, NumPy and scikit-learn: nothing here imports ``webapp``, so the model can be trained,
evaluated and used from a script or a notebook. The web app talks to it through ``model.train``,
``model.predict``, ``model.scores``, ``model.metrics``, ``model.checkpoint`` and ``model.explain``.
"""

CLASS_ORDER = ("real", "fake")
"""Class index 0 is REAL and 1 is FAKE, everywhere: logits, labels, probabilities."""
