package systables

import "strings"

// engineSettings are settings of the query engine (DuckDB). SET of one is
// 42501: the engine's configuration is locked and not the session's.
var engineSettings = map[string]bool{}

func init() {
	for _, n := range strings.Fields(`threads worker_threads memory_limit max_memory enable_external_access
		lock_configuration allow_unsigned_extensions allow_community_extensions autoinstall_known_extensions
		autoload_known_extensions extension_directory temp_directory max_temp_directory_size checkpoint_threshold
		wal_autocheckpoint default_order default_null_order enable_progress_bar enable_profiling profiling_mode
		profile_output profiling_output access_mode allowed_paths allowed_directories custom_extension_repository
		autoinstall_extension_repository home_directory preserve_insertion_order integer_division
		immediate_transaction_mode storage_compatibility_version enable_object_cache disabled_optimizers
		explain_output errors_as_json enable_http_metadata_cache calendar binary_as_string arrow_large_buffer_size
		enable_fsst_vectors force_compression debug_checkpoint_abort ordered_aggregate_threshold
		max_expression_depth perfect_ht_threshold pivot_limit external_threads null_order default_collation
		enable_external_file_cache secret_directory allow_persistent_secrets enable_logging logging_level
		logging_mode logging_storage scalar_subquery_error_on_multiple_rows enable_macro_dependencies
		enable_view_dependencies python_enable_replacements late_materialization_max_rows`) {
		engineSettings[n] = true
	}
}

// IsEngineSetting reports whether name is a setting of the query engine
// (not a PostgreSQL session parameter).
func IsEngineSetting(name string) bool {
	n := strings.ToLower(name)
	if engineSettings[n] {
		return true
	}
	for _, p := range []string{"s3_", "http_", "azure_", "gcs_", "hf_", "duckdb_", "pg_", "mysql_", "sqlite_"} {
		if strings.HasPrefix(n, p) && !strings.Contains(n, ".") {
			return true
		}
	}
	return false
}

// engineStatements are statements of the query engine's dialect that the
// PostgreSQL grammar does not know.
var engineStatements = map[string]bool{"ATTACH": true, "DETACH": true, "INSTALL": true, "FORCE": true,
	"PRAGMA": true, "EXPORT": true, "IMPORT": true, "USE": true, "SUMMARIZE": true, "PIVOT": true, "UNPIVOT": true,
	"FROM": true, "LOAD": true}

// EngineStatement reports whether sql is a statement of the query
// engine's own dialect (ATTACH, INSTALL, PRAGMA, SET GLOBAL, ...), which
// Mandate refuses with 0A000 rather than as a syntax error; kw names it.
func EngineStatement(sql string) (kw string, ok bool) {
	words := leadingWords(sql, 2)
	if len(words) == 0 {
		return "", false
	}
	first := strings.ToUpper(words[0])
	if engineStatements[first] {
		return first, true
	}
	if (first == "SET" || first == "RESET") && len(words) > 1 {
		switch strings.ToUpper(words[1]) {
		case "GLOBAL", "VARIABLE":
			return first + " " + strings.ToUpper(words[1]), true
		}
	}
	return "", false
}

// leadingWords returns up to n words at the start of sql, after
// whitespace and comments.
func leadingWords(sql string, n int) []string {
	var out []string
	s := sql
	for len(out) < n {
		s = strings.TrimLeft(s, " \t\r\n\f\v")
		switch {
		case strings.HasPrefix(s, "--"):
			if i := strings.IndexByte(s, '\n'); i >= 0 {
				s = s[i+1:]
				continue
			}
			return out
		case strings.HasPrefix(s, "/*"):
			if i := strings.Index(s, "*/"); i >= 0 {
				s = s[i+2:]
				continue
			}
			return out
		}
		end := 0
		for end < len(s) && (s[end] == '_' || s[end] >= 'a' && s[end] <= 'z' || s[end] >= 'A' && s[end] <= 'Z') {
			end++
		}
		if end == 0 {
			return out
		}
		out = append(out, s[:end])
		s = s[end:]
	}
	return out
}
