"""redfleet: one control plane from the BMC to the scheduler for GPU clouds."""

__version__ = "0.1.0"
