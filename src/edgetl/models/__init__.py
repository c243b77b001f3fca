"""Backbone registry, classification head and the preprocessing built into every model."""
