-- Three-level namespace: catalog.schema.connection.
CREATE CATALOG eng COMMENT 'engineering';
CREATE SCHEMA eng.tools;
CREATE CONNECTION eng.tools.github_mcp TYPE MCP OPTIONS (url 'https://mcp.github.example/mcp');
-- A one-part connection name means system.ai.<name>.
CREATE CONNECTION jira_mcp TYPE mcp OPTIONS (url = 'https://jira.example/mcp', auth_mode = 'mandate_jwt');
-- A two-part name resolves in the current catalog (system).
CREATE CONNECTION ai.confluence_mcp TYPE MCP OPTIONS (url 'https://confluence.example/mcp');
DESCRIBE CONNECTION system.ai.confluence_mcp;
DESCRIBE CONNECTION tools.github_mcp;
SHOW CONNECTIONS;
SHOW CONNECTIONS IN eng;
SHOW CONNECTIONS IN eng.tools;
SHOW CONNECTIONS IN system.ai;
SHOW CONNECTIONS IN nope;
SHOW SCHEMAS IN eng;
SHOW CATALOGS;
-- A one-part schema name resolves in the current catalog.
CREATE SCHEMA scratch;
SHOW SCHEMAS;
DROP SCHEMA scratch;
CREATE CONNECTION a.b.c.d TYPE MCP OPTIONS (url 'https://x.example/');
CREATE SCHEMA a.b.c;

-- The database is the current catalog.
-- database eng
-- connect admin admin-pw
SELECT current_database();
DESCRIBE CONNECTION tools.github_mcp;
CREATE SCHEMA ops;
CREATE CONNECTION ops.pagerduty_mcp TYPE MCP OPTIONS (url 'https://pagerduty.example/mcp');
SHOW SCHEMAS;
SHOW CONNECTIONS IN eng;
-- One-part connection names still mean system.ai.
DESCRIBE CONNECTION jira_mcp;
-- database nope
-- connect admin admin-pw
SELECT current_database();
-- database system
-- connect admin admin-pw

-- Identifiers: unquoted ones fold to lower case; "double quotes" and `backticks` keep case.
CREATE CATALOG Sales;
DESCRIBE CATALOG SALES;
CREATE CATALOG "Sales";
CREATE CATALOG `Marketing Ops`;
DESCRIBE CATALOG "Marketing Ops";
CREATE SCHEMA `Marketing Ops`.Campaigns;
SHOW SCHEMAS IN "Marketing Ops";
SHOW CATALOGS;
DROP CATALOG `Sales`;
DROP CATALOG sAlEs;
DROP CATALOG "Marketing Ops" CASCADE;
SHOW CATALOGS;

-- Duplicates, IF NOT EXISTS, unknown objects.
CREATE CATALOG eng;
CREATE CATALOG IF NOT EXISTS eng;
CREATE SCHEMA eng.tools;
CREATE SCHEMA IF NOT EXISTS eng.tools COMMENT 'ignored';
CREATE CONNECTION eng.tools.github_mcp TYPE MCP OPTIONS (url 'https://other.example/mcp');
CREATE CONNECTION IF NOT EXISTS eng.tools.github_mcp TYPE MCP OPTIONS (url 'https://other.example/mcp');
DESCRIBE CONNECTION eng.tools.github_mcp;
CREATE SCHEMA nope.tools;
CREATE CONNECTION eng.nope.x TYPE MCP OPTIONS (url 'https://x.example/');
DESCRIBE CATALOG nope;
DESCRIBE SCHEMA eng.nope;
DESCRIBE CONNECTION eng.tools.nope;
SHOW GRANTS ON CONNECTION eng.tools.nope;
GRANT USE_CONNECTION ON CONNECTION eng.tools.github_mcp TO nobody;
CREATE GROUP eng;
CREATE USER eng;

-- RENAME.
ALTER CONNECTION eng.tools.github_mcp RENAME TO gh_mcp;
ALTER SCHEMA eng.tools RENAME TO devtools;
SHOW CONNECTIONS IN eng;
DESCRIBE CONNECTION eng.devtools.gh_mcp;
ALTER SCHEMA eng.devtools RENAME TO ops;
ALTER SCHEMA system.ai RENAME TO models;
ALTER CATALOG system RENAME TO sys;
-- Renaming a catalog renames everything inside; grants follow the object.
CREATE CATALOG old_name;
CREATE SCHEMA old_name.s;
CREATE CONNECTION old_name.s.c TYPE MCP OPTIONS (url 'https://c.example/mcp');
GRANT USE_CONNECTION ON CONNECTION old_name.s.c TO eng;
ALTER CATALOG old_name RENAME TO new_name;
SHOW CATALOGS;
SHOW CONNECTIONS IN new_name;
SHOW GRANTS ON CONNECTION new_name.s.c;
DESCRIBE CONNECTION old_name.s.c;
DROP CATALOG new_name CASCADE;

-- OWNER TO.
CREATE USER "bob@example.com" WITH PASSWORD 'bob-pw';
CREATE GROUP "platform-team";
ALTER CONNECTION eng.devtools.gh_mcp OWNER TO "bob@example.com";
ALTER SCHEMA eng.devtools SET OWNER TO "platform-team";
ALTER CATALOG eng OWNER TO nobody;
DESCRIBE CONNECTION eng.devtools.gh_mcp;
DESCRIBE SCHEMA eng.devtools;

-- SET OPTIONS replaces the whole option list; values are validated.
ALTER CONNECTION eng.devtools.gh_mcp SET OPTIONS (url 'ftp://mcp.github.example/mcp');
ALTER CONNECTION eng.devtools.gh_mcp SET OPTIONS (url 'not a url');
ALTER CONNECTION eng.devtools.gh_mcp SET OPTIONS (url 'https://mcp.github.example/mcp', colour 'blue');
ALTER CONNECTION eng.devtools.gh_mcp SET OPTIONS (url 'https://mcp.github.example/mcp', auth_mode 'magic');
ALTER CONNECTION eng.devtools.gh_mcp SET OPTIONS (auth_mode 'none');
ALTER CONNECTION eng.devtools.gh_mcp SET OPTIONS (url 'https://mcp.github.example/mcp', auth_mode 'shared_principal');
ALTER CONNECTION eng.devtools.gh_mcp SET OPTIONS (url 'https://mcp.github.example/mcp', scopes 'repo "bad"');
ALTER CONNECTION eng.devtools.gh_mcp SET OPTIONS (url 'https://mcp.github.example/mcp', include_tools 'get_*,list_issues');
ALTER CONNECTION eng.devtools.gh_mcp SET OPTIONS (url 'https://mcp.github.example/mcp', url 'https://twice.example/');
ALTER CONNECTION eng.devtools.gh_mcp OPTIONS (url 'https://mcp2.github.example/mcp', auth_mode 'shared_principal', bearer_token 'tok-789');
DESCRIBE CONNECTION eng.devtools.gh_mcp;
CREATE CONNECTION eng.devtools.ftp TYPE FTP OPTIONS (url 'https://ftp.example/');
CREATE CONNECTION eng.devtools.nourl TYPE MCP OPTIONS (auth_mode 'none');

-- COMMENT ON.
COMMENT ON CATALOG eng IS 'Engineering tools';
COMMENT ON SCHEMA eng.devtools IS 'developer tools';
COMMENT ON CONNECTION eng.devtools.gh_mcp IS 'GitHub';
SHOW CATALOGS;
SHOW SCHEMAS IN eng;
COMMENT ON CONNECTION eng.devtools.gh_mcp IS NULL;
SHOW CONNECTIONS IN eng.devtools;
COMMENT ON CONNECTION eng.devtools.missing IS 'x';

-- DROP: containers must be empty unless CASCADE; built-ins cannot be dropped;
-- a principal that owns objects cannot be dropped.
DROP GROUP "platform-team";
DROP USER "bob@example.com";
DROP CATALOG eng;
DROP SCHEMA eng.devtools;
DROP SCHEMA eng.devtools RESTRICT;
DROP CONNECTION eng.devtools.gh_mcp;
DROP CONNECTION eng.devtools.gh_mcp;
DROP CONNECTION IF EXISTS eng.devtools.gh_mcp;
DROP SCHEMA system.ai;
DROP CATALOG system CASCADE;
DROP CATALOG eng CASCADE;
DROP CATALOG IF EXISTS eng;
DROP CATALOG eng;
SHOW CATALOGS;
DROP USER "platform-team";
DROP GROUP "platform-team";
DROP USER "bob@example.com";
DROP USER IF EXISTS "bob@example.com";
DROP GROUP "account users";
DROP USER admin;
