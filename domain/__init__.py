"""The core of batchery: its data, its rules and its contracts, shared by the API and the workers."""
