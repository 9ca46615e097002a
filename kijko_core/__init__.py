"""Kijko's core library: tenancy, identity and domain services, free of any web framework."""

__version__ = "0.1.0"
