-- The analyst database. `{db}` is the configured database name (default cpn).
CREATE DATABASE IF NOT EXISTS {db};
