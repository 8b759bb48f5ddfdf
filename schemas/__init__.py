"""The contract (SPEC §3): event models, reject reasons, topics, catalogue, prices. Pure, no I/O."""
