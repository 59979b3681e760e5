"""deconvlab.serve (placeholder; filled by its issue)."""
