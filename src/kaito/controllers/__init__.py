"""The workspace controller: a Workspace becomes NodeClaims, a workload or tuning Job, and a truthful status."""
