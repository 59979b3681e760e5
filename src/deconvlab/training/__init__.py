"""deconvlab.training (placeholder; filled by its issue)."""
