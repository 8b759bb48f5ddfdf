"""The dispatcher's question (SPEC §8): sellable capacity, a forecast of idle devices, ranked offers."""
