"""The engine: the Decider, conflict resolution, the memo, the matchers, enrichment."""
