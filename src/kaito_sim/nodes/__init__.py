"""The cluster's nodes: kubelets, the scheduler, process pods with their probes and logs, and the proxy to them."""
