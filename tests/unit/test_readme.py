"""The README's configuration table is generated from the settings models and kept current."""

from __future__ import annotations

from surplus import configdoc


def test_config_table_is_current() -> None:
    assert configdoc.main(["--check"]) == 0, "run: python -m surplus.configdoc"


def test_table_names_the_contract_variables() -> None:
    table = configdoc.table()
    for name in ("KAFKA_BOOTSTRAP", "CLICKHOUSE_URL", "SURPLUS_TOPIC_PREFIX"):
        assert f"`{name}`" in table
