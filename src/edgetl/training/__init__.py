"""Training: from a folder of labelled images to a finished run directory (`edgetl.train` is the entry point)."""
