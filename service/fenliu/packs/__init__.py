"""Rule packs: loading YAML (keeping file and line), checking it, sealing what serves."""
