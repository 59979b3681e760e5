"""deconvlab.analyses (placeholder; filled by its issue)."""
