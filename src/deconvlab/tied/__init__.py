"""deconvlab.tied (placeholder; filled by its issue)."""
