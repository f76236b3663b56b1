// Command ferretdb runs FerretDB v1 (MongoDB wire protocol on top of PostgreSQL)
// for local development and tests.
//
// Why embed instead of `go install .../cmd/ferretdb`: the upstream command panics at
// start when built from the module zip, because its generated build/version/version.txt
// is not part of the module (FerretDB issue 2982). The embeddable package skips that check.
//
// Telemetry: the embeddable package already disables telemetry and locks it off
// (see ferretdb.New); nothing is ever reported to the vendor.
//
// Configuration: flags, each defaulting to an environment variable, then to the
// addresses of the local stack (scripts/infra/stack.sh).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// envOr returns the value of the environment variable key, or def when it is unset or empty.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// envDuration returns the duration in environment variable key, or def when it is unset or invalid.
func envDuration(key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(key)); err == nil {
		return d
	}
	return def
}

func main() {
	listenAddr := flag.String("listen-addr", envOr("FERRETDB_LISTEN_ADDR", "127.0.0.1:27017"),
		"TCP address to listen on (env FERRETDB_LISTEN_ADDR)")
	handler := flag.String("handler", envOr("FERRETDB_HANDLER", "postgresql"),
		"backend: postgresql or sqlite (env FERRETDB_HANDLER)")
	postgresqlURL := flag.String("postgresql-url",
		envOr("FERRETDB_POSTGRESQL_URL", "postgres://cqrs:cqrs@127.0.0.1:5432/ferretdb"),
		"PostgreSQL URL for the postgresql backend; the database must exist and be UTF8 (env FERRETDB_POSTGRESQL_URL)")
	sqliteURL := flag.String("sqlite-url", envOr("FERRETDB_SQLITE_URL", "file:data/"),
		"SQLite directory URI for the sqlite backend (env FERRETDB_SQLITE_URL)")
	logLevel := flag.String("log-level", envOr("FERRETDB_LOG_LEVEL", "info"),
		"log level: debug, info, warn or error (env FERRETDB_LOG_LEVEL)")
	watchdogInterval := flag.Duration("watchdog-interval", envDuration("FERRETDB_WATCHDOG_INTERVAL", time.Second),
		"how often the server pings itself; 0 turns the watchdog off (env FERRETDB_WATCHDOG_INTERVAL)")
	watchdogTimeout := flag.Duration("watchdog-timeout", 3*time.Second,
		"how long a self-ping may take before it counts as unanswered")
	watchdogFailures := flag.Int("watchdog-failures", 3,
		"consecutive failed self-pings after which the server re-executes itself (see watchdog.go)")
	pingOnly := flag.Bool("ping", false,
		"do not serve: send a MongoDB ping to -listen-addr and exit 0 if it answers ok (readiness check)")
	flag.Parse()

	if *pingOnly {
		if err := ping(*listenAddr, 2*time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "ping %s: %v\n", *listenAddr, err)
			os.Exit(1)
		}
		return
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "invalid -log-level %q: %v\n", *logLevel, err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: *listenAddr},
		Logger:        logger,
		Handler:       *handler,
		PostgreSQLURL: *postgresqlURL,
		SQLiteURL:     *sqliteURL,
	})
	if err != nil {
		logger.Error("cannot start FerretDB", "error", err)
		os.Exit(1)
	}

	// SIGTERM (stack.sh down) and SIGINT (Ctrl-C) cancel the context: Run then closes
	// the listener and client connections and the backend pool before returning.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	go watchdog(ctx, *listenAddr, *watchdogInterval, *watchdogTimeout, *watchdogFailures, logger)

	logger.Info("FerretDB listening", "addr", *listenAddr, "handler", *handler)
	if err := f.Run(ctx); err != nil {
		logger.Error("FerretDB stopped with an error", "error", err)
		os.Exit(1)
	}
	logger.Info("FerretDB stopped")
}
