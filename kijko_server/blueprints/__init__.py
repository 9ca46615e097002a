"""One blueprint per domain; each only translates HTTP to service calls."""
