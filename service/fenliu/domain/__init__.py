"""The domain vocabulary: complaints, decisions, fields, errors, personal data."""
