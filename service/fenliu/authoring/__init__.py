"""The rule author's tools: test cases, lint, diff, text scoring and training."""
