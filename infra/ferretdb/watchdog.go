package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"runtime"
	"syscall"
	"time"
)

// watchdog pings this FerretDB through its own listener every interval and, after `failures`
// pings in a row went unanswered for `timeout` each (a slow answer under load is an answer), replaces the process with a fresh copy of itself (same pid, same arguments).
//
// Why: FerretDB v1.24 can stop answering for good. Seen here: (1) a bulk update keeps each
// statement's PostgreSQL connection until the whole bulk is done, so a bulk larger than the pool
// waits on itself (the write store now sends small bulks); (2) createIndexes holds the metadata
// registry's write lock while it waits for a PostgreSQL connection held by requests queued behind
// that lock. From then on every command, ping included, hangs until the process is restarted. In Kubernetes a liveness probe does this restart; the local
// stack has no orchestrator, so the server restarts itself. Re-executing keeps the pid that the
// stack scripts track. Only silence counts as a miss: while PostgreSQL is down, FerretDB answers
// pings with an error, and restarting it would not help.
func watchdog(ctx context.Context, addr string, interval, timeout time.Duration, failures int, logger *slog.Logger) {
	if interval <= 0 || failures <= 0 {
		return
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	misses := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		err := ping(addr, timeout)
		if err == nil || errors.Is(err, errNotOK) {
			misses = 0 // an error reply is an answer: the server is responsive, its backend is not
			continue
		}
		misses++
		logger.Warn("watchdog: FerretDB did not answer its own ping", "misses", misses, "error", err)
		if misses < failures {
			continue
		}
		logger.Error("watchdog: FerretDB stopped answering; restarting the process", "misses", misses)
		// Where every goroutine waits, for the post-mortem (the log is the only trace of it).
		stacks := make([]byte, 8<<20)
		os.Stderr.Write(stacks[:runtime.Stack(stacks, true)]) //nolint:errcheck // best effort
		exe, err := os.Executable()
		if err == nil {
			err = syscall.Exec(exe, os.Args, os.Environ())
		}
		// Exec only returns on failure: exit, so at least the stack sees the server down.
		logger.Error("watchdog: cannot re-execute; exiting", "error", err)
		os.Exit(3)
	}
}
