"""Alerts: rules evaluated on the workers' live state, delivered to Alertmanager-style webhooks.

Pure: config (models), targets, live, rules, evaluate, dispatch, payload, sign.
I/O: delivery (HTTP), persist (ClickHouse). Wiring: engine, wiring, cli.
"""
