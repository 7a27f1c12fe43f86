"""The events service's domain: what a source may send and the errors it is refused with (pure: no HTTP, no I/O)."""
