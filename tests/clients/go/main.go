// Command panels runs SQL queries through clickhouse-go v2 over HTTP (the driver of the Grafana
// ClickHouse plugin) and prints what came back as JSON, for tests/integration/test_store_clients.py.
//
// Usage: panels -addr host:port -user U -password P -database cpn < queries.json
// queries.json: [{"name": "...", "sql": "..."}]; output: [{"name", "columns", "types", "rows",
// "error"}],
// every value as its string form.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

type query struct {
	Name string `json:"name"`
	SQL  string `json:"sql"`
}

type result struct {
	Name    string     `json:"name"`
	Columns []string   `json:"columns"`
	Types   []string   `json:"types"`
	Rows    [][]string `json:"rows"`
	Error   string     `json:"error,omitempty"`
}

func run(db *sql.DB, q query) result {
	out := result{Name: q.Name, Columns: []string{}, Types: []string{}, Rows: [][]string{}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, q.SQL)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		out.Error = err.Error()
		return out
	}
	out.Columns = cols
	types, err := rows.ColumnTypes()
	if err != nil {
		out.Error = err.Error()
		return out
	}
	for _, t := range types {
		out.Types = append(out.Types, t.DatabaseTypeName())
	}
	for rows.Next() {
		values := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range values {
			ptrs[i] = &values[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			out.Error = err.Error()
			return out
		}
		row := make([]string, len(cols))
		for i, v := range values {
			row[i] = fmt.Sprint(deref(v))
		}
		out.Rows = append(out.Rows, row)
	}
	if err := rows.Err(); err != nil {
		out.Error = err.Error()
	}
	return out
}

func deref(v any) any {
	switch t := v.(type) {
	case *string:
		if t == nil {
			return nil
		}
		return *t
	case time.Time:
		return t.UTC().Format(time.RFC3339)
	}
	return v
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8123", "host:port of the HTTP interface")
	user := flag.String("user", "default", "user")
	password := flag.String("password", "", "password")
	database := flag.String("database", "cpn", "database")
	flag.Parse()
	var queries []query
	if err := json.NewDecoder(os.Stdin).Decode(&queries); err != nil {
		fmt.Fprintln(os.Stderr, "panels: bad input:", err)
		os.Exit(2)
	}
	db := clickhouse.OpenDB(&clickhouse.Options{
		Addr:        []string{*addr},
		Protocol:    clickhouse.HTTP,
		Auth:        clickhouse.Auth{Database: *database, Username: *user, Password: *password},
		Settings:    clickhouse.Settings{"max_execution_time": 60},
		DialTimeout: 10 * time.Second,
	})
	defer db.Close()
	results := make([]result, 0, len(queries))
	for _, q := range queries {
		results = append(results, run(db, q))
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, "panels:", err)
		os.Exit(1)
	}
}
