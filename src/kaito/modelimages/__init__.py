"""Model images: push a model directory to a registry, pull it into a node-local cache shared by the node's pods."""
