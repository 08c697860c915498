"""In-process channel state: synchronous, one registry per app."""
