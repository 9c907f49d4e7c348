"""The node provisioner: turns karpenter.sh/v1 NodeClaims into cloud GPU nodes (AKS agent pools) and back."""
