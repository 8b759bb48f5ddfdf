"""The embedded chDB store served over ClickHouse's HTTP interface (`surplus store serve`, SPEC §9).

protocol.py  the HTTP interface's rules: error codes, statuses, formats, INSERT bodies (pure)
access.py    the users of deploy/clickhouse and how each is enforced on the engine (pure + files)
engine.py    the one chDB engine of the process: a connection per request or session (I/O)
app.py       the aiohttp application answering ClickHouse's HTTP protocol (I/O)
cli.py       `surplus store serve`: the lock beside the store, start-up, SIGTERM (wiring)
"""
