"""Kafka for every part of Surplus: how to connect, topics, and the local broker. Package.

connection.py  the one connection model (bootstrap, SASL, TLS) and its KAFKA_* variables
admin.py       admin clients and the one place topics are created (`ensure_topics`, `PARTITIONS`)
local.py       the local KRaft broker's process supervision (`LocalKafka`: up, down, status)
jars.py        the Kafka jars from Maven and the JVM command line
ports.py       free ports, reachability, the broker's last log lines
templates.py   the broker's server.properties / log4j / tool configs
pki.py         the secure broker's throw-away test CA and certificates
scram.py       the secure broker's SCRAM users
cli.py         `surplus kafka up|down|status`

Importing this package imports nothing but itself: the agent uses connection.py with only the
`agent` extra installed.
"""
