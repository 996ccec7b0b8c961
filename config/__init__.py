"""Configuration only: settings, tiers and prices. The layer every other package builds on.

May import: nothing of batchery's, and no broker, database or HTTP client.
"""
