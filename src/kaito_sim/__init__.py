"""The embedded local cluster: a Kubernetes API server double that real kubectl and clients drive."""
