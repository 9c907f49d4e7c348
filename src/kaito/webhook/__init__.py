"""Admission webhooks: an AdmissionReview v1 server over TLS in front of pure validation functions."""
