"""Export formats, one module each, and the verification every export goes through."""
