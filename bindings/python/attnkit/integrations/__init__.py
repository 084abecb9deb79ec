"""Integrations with frameworks users already run: `attnkit.integrations.transformers`."""
