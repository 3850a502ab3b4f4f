"""The shared records every area reads: effective labels, model versions, the audit trail, and
the errors a request gets when it names something missing."""
