package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

var errHelp = errors.New("help requested")

// newFlagSet returns a subcommand's flag set writing to stderr, or to
// stdout when args ask for help (--help is an answer, not an error).
func newFlagSet(name string, args []string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" || a == "-h=true" {
			fs.SetOutput(stdout)
		}
	}
	return fs
}

// envName turns a flag name into its environment variable: data-dir → MANDATE_DATA_DIR.
func envName(flagName string) string {
	return "MANDATE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// printEnvFlags lists every flag with its environment variable (usage).
func printEnvFlags(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		fmt.Fprintf(fs.Output(), "  --%s [%s]\n      %s%s\n", f.Name, envName(f.Name), f.Usage, defaultNote(f))
	})
}

// defaultNote is the " (default ...)" of a flag's usage line: none for a
// switch that is off or an empty value, nor when the usage text already
// says what the default is.
func defaultNote(f *flag.Flag) string {
	if f.DefValue == "" || strings.Contains(f.Usage, "(default") {
		return ""
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		if f.DefValue == "false" {
			return ""
		}
		return " (default on)"
	}
	return fmt.Sprintf(" (default %q)", f.DefValue)
}

// parseEnvArgs sets every flag from its environment variable, then parses
// args, which override the environment.
func parseEnvArgs(fs *flag.FlagSet, args []string) error {
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("invalid %s=%q: %w", envName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	return parseArgs(fs, args)
}

// parseArgs parses a subcommand's flags: --help is errHelp (exit 0), and
// positional arguments are refused.
func parseArgs(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return nil
}
