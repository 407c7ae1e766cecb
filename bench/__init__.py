"""elastic-resnet's benchmark: raw model ceiling vs a plain one-image-per-request server vs this service."""
