"""`edgetl tune`: the most accurate classifier that meets a device's latency, size and memory budget.

space.py lists the candidates (from the backbone registry, narrowed by `--space`); probe.py builds each one's
untrained file in the target format and times it here and on the boards; search.py trains the survivors with
successive halving and finishes the best few as ordinary runs; result.py is tune.json and the Pareto table.
"""
