-- What drivers and tools send besides governance statements.
SHOW server_version;
SHOW server_version_num;
SHOW client_encoding;
SHOW TimeZone;
SHOW DateStyle;
SHOW transaction_isolation;
SHOW standard_conforming_strings;
SHOW is_superuser;
SHOW no_such_setting;
SET application_name = 'golden';
SHOW application_name;
SET TIME ZONE 'Europe/Berlin';
SHOW timezone;
SET timezone TO 'Mars/Olympus_Mons';
RESET timezone;
SHOW timezone;
SET search_path TO public, ai;
SHOW search_path;
SET SESSION statement_timeout = '5s';
SHOW statement_timeout;
SET statement_timeout = 'soon';
SET statement_timeout TO DEFAULT;
SHOW statement_timeout;
SET client_encoding = 'UTF8';
SET client_encoding = 'LATIN1';
SET server_version = '17.0';
SET no_such_setting = 1;
SET mandate.trace = 'on';
SHOW mandate.trace;
SET extra_float_digits = 3;
SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;
RESET ALL;
SHOW search_path;
SHOW extra_float_digits;

-- Functions tools call on connect.
SELECT version();
SELECT pg_catalog.version();
SELECT current_user, session_user, current_database(), current_catalog, current_schema();
SELECT current_setting('server_version_num'), current_setting('TimeZone');
SELECT current_setting('no_such_setting');
SELECT current_setting('no_such_setting', true);
SELECT set_config('application_name', 'via-set-config', false);
SHOW application_name;
SELECT 1, 2.5, 'text', true, NULL, 42 AS answer, '7'::int AS seven, 'yes'::bool;
SELECT 1 LIMIT 0;
SELECT quote_ident('Data Team'), quote_ident('plain');
SELECT pg_backend_pid();
SELECT now() IS NOT NULL;
SELECT * FROM pg_catalog.pg_tables;
SELECT no_such_function();
SELECT 'x'::int;

-- Transaction blocks: the changes inside apply together at COMMIT, and the
-- block sees its own changes; ROLLBACK discards them.
BEGIN;
SHOW transaction_isolation;
COMMIT;
START TRANSACTION;
CREATE GROUP rolled_back;
SHOW GROUPS;
ROLLBACK;
SHOW GROUPS;
BEGIN;
CREATE GROUP committed_group;
COMMIT;
-- An error inside a block aborts it until ROLLBACK.
BEGIN;
CREATE GROUP committed_group;
SHOW server_version;
SELECT 1;
ROLLBACK;
SELECT 1;
-- COMMIT of a failed block rolls back: nothing of it applies.
BEGIN;
CREATE GROUP never_created;
DROP CATALOG nope;
COMMIT;
SHOW GROUPS;
-- Savepoints: ROLLBACK TO discards the changes after the savepoint.
BEGIN;
CREATE GROUP sp_kept;
SAVEPOINT a;
CREATE GROUP sp_discarded;
ROLLBACK TO SAVEPOINT a;
RELEASE a;
COMMIT;
SHOW GROUPS;
-- Outside a block COMMIT and ROLLBACK are no-ops.
COMMIT;
ROLLBACK;

-- Statements Mandate does not support.
CREATE TABLE t(x int);
INSERT INTO t VALUES (1);
UPDATE t SET x = 2;
CREATE ROLE bob LOGIN;
COPY t FROM STDIN;
LISTEN channel;

-- Syntax errors from both parsers (governance and PostgreSQL).
GRANT USE_CONNECTION ON CONNECTON x TO y;
GRANT USE_CONNECTION ON CONNECTION x TO;
CREATE CONNECTION c TYPE MCP OPTIONS url 'https://x.example/';
CREATE CONNECTION c TYPE MCP OPTIONS (url 'https://x.example/') COMMENT;
REVOKE USE_CONNECTION ON CONNECTION x TO y;
SHOW GRANTS ON TABLE t;
DESCRIBE CONNECTION;
SELEC 1;
SELECT 1 +;
SET = 1;
-- An unterminated quote swallows the rest of the script, so it comes last.
CREATE USER "unterminated;

-- DISCARD ALL resets the session and drops prepared statements (last: a
-- client's statement cache does not survive it, as with PostgreSQL).
SET application_name = 'before-discard';
DISCARD ALL;
