"""The registry client the pods share: OCI artifacts pushed and pulled, digest-verified, with docker-config auth."""
