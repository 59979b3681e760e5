"""deconvlab.engine (placeholder; filled by its issue)."""
