"""Scripts that build and check the service image on a machine without Docker (docs/container.md)."""
