"""The kaito API: pydantic models of the Workspace and NodeClaim resources, and the CRDs generated from them."""
