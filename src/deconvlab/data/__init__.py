"""deconvlab.data (placeholder; filled by its issue)."""
