"""`edgetl report`: one self-contained HTML page of a run (or an exported outside model's folder) to look at
(`edgetl.report` is the entry point)."""
