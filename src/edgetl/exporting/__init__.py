"""Export formats, one module each, and the verification every export goes through (`edgetl.export` is the entry
point)."""
