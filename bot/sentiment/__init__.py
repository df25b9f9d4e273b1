"""Sentiment analysis as a task with its own model and a structured (JSON schema) reply."""
