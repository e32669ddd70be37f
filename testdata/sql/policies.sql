-- Policies beyond grants: Rego modules attached to connections, schemas, catalogs.
CREATE CONNECTION my_github_mcp TYPE MCP OPTIONS (url 'https://mcp.github.example/mcp');
CREATE CATALOG eng;
CREATE SCHEMA eng.tools;
CREATE CONNECTION eng.tools.jira TYPE MCP OPTIONS (url 'https://jira.example/mcp');
CREATE POLICY no_repo_deletes ON CONNECTION my_github_mcp AS $$
package mandate.github
deny contains msg if {
	input.tool == "delete_repo"
	msg := "deleting repositories is not allowed"
}
$$;
CREATE POLICY working_hours ON CATALOG eng AS 'package mandate.hours
deny contains "outside working hours" if { false }';
CREATE POLICY tools_only ON SCHEMA eng.tools AS $rego$
package mandate.tools
deny contains msg if { input.method == "resources/read"; msg := "resources are not exposed" }
$rego$;
SHOW POLICIES;
SHOW POLICIES ON CONNECTION eng.tools.jira;
SHOW POLICIES ON CONNECTION my_github_mcp;
-- Errors: a Rego error is refused with the compiler's message; no deny rule; duplicates; unknown targets.
CREATE POLICY broken ON CONNECTION my_github_mcp AS 'package p
deny contains msg if {';
CREATE POLICY no_deny ON CONNECTION my_github_mcp AS 'package p
allow := true';
CREATE POLICY no_repo_deletes ON CONNECTION eng.tools.jira AS 'package p
deny contains "x" if { false }';
CREATE POLICY orphan ON CONNECTION nowhere AS 'package p
deny contains "x" if { false }';
CREATE POLICY p ON METASTORE AS 'package p';
-- Dropping: by name; IF EXISTS; a connection's policies go with it.
DROP POLICY tools_only;
DROP POLICY tools_only;
DROP POLICY IF EXISTS tools_only;
DROP CONNECTION my_github_mcp;
SHOW POLICIES;
-- Others may not attach policies to what they cannot manage.
CREATE USER bob WITH PASSWORD 'bob-pw';
-- connect bob bob-pw
CREATE POLICY sneaky ON CATALOG eng AS 'package p
deny contains "x" if { false }';
DROP POLICY working_hours;
SHOW POLICIES;
