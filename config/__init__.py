"""Settings and tiers: the layer every other package builds on. It imports nothing of batchery's."""
