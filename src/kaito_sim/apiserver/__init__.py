"""The Kubernetes API server double: storage, watch, writes, patches, schemas, tables, discovery, admission, RBAC."""
