"""The README's "Writing an agent in another language" snippets are the code the tests run
(tests/clients: the Python SDK helper, the Java SDK client, the Go client)."""

from __future__ import annotations

from tests.clients import snippets


def test_readme_snippets_are_the_tested_code() -> None:
    assert snippets.main(["--check"]) == 0, "run: python -m tests.clients.snippets"


def test_each_snippet_shows_the_key_and_the_content_mode() -> None:
    python, java, go = (snippets.snippet(n) for n in ("python", "java", "go"))
    assert "to_binary" in python and "to_structured" in python and "dc_id" in python
    assert "CloudEventSerializer" in java and "traceparent" in java
    assert "cloudevents-kafka-binary/1" in go and "surplus-signature" in go and "ce_source" in go
