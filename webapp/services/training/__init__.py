"""Training and measuring model versions: the training set, the training job (in process or
under torchrun), the head refit, out-of-fold networks, scoring, evaluation, recalibration,
robustness, versions side by side, the data audit, inference engines and activation."""
