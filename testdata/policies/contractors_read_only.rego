# Contractors may only call read-only tools (get_*, list_*, search_*, read_*).
package mandate.contractors

read_only_prefixes := {"get_", "list_", "search_", "read_"}

deny contains msg if {
	"contractors" in input.groups
	input.method == "tools/call"
	not read_only(input.tool)
	msg := sprintf("contractors may only call read-only tools; %q is not one", [input.tool])
}

read_only(tool) if {
	some prefix in read_only_prefixes
	startswith(tool, prefix)
}
