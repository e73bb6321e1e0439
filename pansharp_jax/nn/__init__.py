"""Floor 1: shared neural-network layers (selective scan, ...)."""
