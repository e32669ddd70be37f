package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/mandatehq/mandate/catalog"
)

// version, when set at build time with -ldflags "-X main.version=...",
// overrides the module version from the build info.
var version = ""

// versionString is "mandate VERSION (REVISION[, modified], TIME, GOVERSION)":
// the module version and the VCS revision Go records in the binary.
func versionString() string {
	v, rev, at, dirty, gover := version, "", "", false, ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		gover = bi.GoVersion
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	var parts []string
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if dirty {
			rev += ", modified"
		}
		parts = append(parts, "revision "+rev)
	}
	if at != "" {
		parts = append(parts, at)
	}
	if gover != "" {
		parts = append(parts, gover)
	}
	if len(parts) == 0 {
		return "mandate " + v
	}
	return "mandate " + v + " (" + strings.Join(parts, ", ") + ")"
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cmd := command(args[0]); cmd != nil {
		return exitCode(args[0], cmd(ctx, args[1:], stdout, stderr), stderr)
	}
	switch args[0] {
	case "loadgen":
		return loadgen(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "mandate: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// command is subcommand name, if it is one that returns an error
// (exitCode); else nil.
func command(name string) func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	switch name {
	case "serve":
		return serve
	case "gateway":
		return runGateway
	case "dev-token":
		return runDevToken
	case "migrate":
		return runMigrate
	case "rotate-query-password":
		return runRotateQueryPassword
	}
	return nil
}

// exitCode is the exit status of subcommand name that returned err: 0 for
// none or --help; else 1, with the error (and a catalog error's detail
// and hint) on stderr.
func exitCode(name string, err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, errHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "mandate %s: %v\n", name, err)
	var ce *catalog.Error
	if errors.As(err, &ce) {
		if ce.Detail != "" {
			fmt.Fprintln(stderr, "DETAIL:", ce.Detail)
		}
		if ce.Hint != "" {
			fmt.Fprintln(stderr, "HINT:", ce.Hint)
		}
	}
	return 1
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Mandate: a SQL-governed gateway for AI agents.

Usage:
  mandate serve [flags]   run the catalog, the SQL front end, the HTTP API and the MCP and LLM gateway
  mandate gateway --catalog URL --node-token-file FILE [--oidc-issuer URL] [--http-addr HOST:PORT]
                          run a gateway node (MCP and LLM) against a remote catalog
  mandate dev-token --data-dir DIR --user NAME [--agent NAME]
                          print a token of the development identity provider
                          (mandate serve --dev; not for production)
  mandate migrate --from DIR --to postgres://user@host/db
                          copy an embedded installation (catalog, keys, audit)
                          into PostgreSQL for replicas (mandate serve --store)
  mandate rotate-query-password --store postgres://user@host/db
                          give the role of the system tables' queries on PostgreSQL
                          a new password (MANDATE_MASTER_KEY; replicas keep running)
  mandate loadgen grants  load generator: durable GRANT/REVOKE over the wire (see BENCHMARKS.md)
  mandate version         print the version

Run "mandate serve --help" for the flags.
`)
}
