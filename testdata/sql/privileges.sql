-- Principals, nested groups and a catalog to govern.
CREATE USER alice WITH PASSWORD 'alice-pw';
CREATE USER bob WITH PASSWORD 'bob-pw';
CREATE USER carol WITH PASSWORD 'carol-pw';
CREATE SERVICE PRINCIPAL "review-agent" WITH PASSWORD 'agent-pw';
CREATE GROUP analysts;
CREATE GROUP "data-team";
CREATE GROUP eng;
-- alice ∈ analysts ∈ data-team ∈ eng
ALTER GROUP analysts ADD USER alice;
ALTER GROUP "data-team" ADD GROUP analysts;
ALTER GROUP eng ADD GROUP "data-team";
ALTER GROUP analysts ADD SERVICE PRINCIPAL "review-agent";
-- Cycles are refused.
ALTER GROUP analysts ADD GROUP eng;
ALTER GROUP analysts ADD GROUP analysts;
ALTER GROUP analysts ADD USER alice;
ALTER GROUP analysts ADD GROUP alice;
ALTER GROUP "account users" ADD USER bob;
-- A statement changes everything or nothing.
ALTER GROUP analysts ADD USER bob, nobody;
SHOW GROUPS;
DESCRIBE USER alice;
CREATE CATALOG sales;
CREATE SCHEMA sales.crm;
CREATE CONNECTION sales.crm.sf_mcp TYPE MCP OPTIONS (url 'https://mcp.salesforce.example/mcp');

-- A non-admin without privileges cannot grant; the message names what is missing.
-- connect alice alice-pw
GRANT USE_CONNECTION ON CONNECTION sales.crm.sf_mcp TO bob;
REVOKE USE_CONNECTION ON CONNECTION sales.crm.sf_mcp FROM bob;
GRANT CREATE_CATALOG ON METASTORE TO bob;
SHOW GRANTS ON CONNECTION sales.crm.sf_mcp;
-- Objects without any privilege are invisible.
DESCRIBE CONNECTION sales.crm.sf_mcp;
SHOW CATALOGS;
SHOW CONNECTIONS IN sales;
-- Principal management is for metastore admins only.
CREATE USER mallory WITH PASSWORD 'x';
CREATE GROUP friends;
ALTER GROUP analysts ADD USER bob;
ALTER GROUP analysts REMOVE USER alice;
DROP USER bob;
ALTER USER bob WITH PASSWORD 'hijacked';
-- Everyone may change their own password.
ALTER USER alice WITH PASSWORD 'alice-new-pw';
CREATE CATALOG alice_cat;

-- Grants to a group reach its members transitively.
-- connect admin admin-pw
GRANT USE_CATALOG, CREATE_SCHEMA ON CATALOG sales TO "data-team";
GRANT CREATE CATALOG ON METASTORE TO eng;
SHOW GRANTS ON METASTORE;
-- The old password no longer works.
-- connect alice alice-pw
-- connect alice alice-new-pw
SELECT current_user;
CREATE CATALOG alice_cat;
CREATE SCHEMA sales.alice_tools;
CREATE CONNECTION sales.alice_tools.notes_mcp TYPE MCP OPTIONS (url 'https://notes.example/mcp');
-- The owner of a schema may grant on it and on what it contains.
GRANT USE_SCHEMA ON SCHEMA sales.alice_tools TO bob;
GRANT USE_CONNECTION ON CONNECTION sales.alice_tools.notes_mcp TO bob, carol;
SHOW GRANTS ON CONNECTION sales.alice_tools.notes_mcp;
-- ... but not on objects it does not own.
GRANT USE_CONNECTION ON CONNECTION sales.crm.sf_mcp TO bob;
SHOW CATALOGS;

-- MANAGE lets its holder grant, together with the USE privileges of the containers.
-- connect admin admin-pw
GRANT MANAGE ON CONNECTION sales.crm.sf_mcp TO carol;
-- connect carol carol-pw
GRANT USE_CONNECTION ON CONNECTION sales.crm.sf_mcp TO bob;
-- connect admin admin-pw
GRANT USE CATALOG ON CATALOG sales TO carol;
GRANT USE SCHEMA ON SCHEMA sales.crm TO carol;
-- connect carol carol-pw
GRANT USE_CONNECTION ON CONNECTION sales.crm.sf_mcp TO bob;
REVOKE USE_CONNECTION ON CONNECTION sales.crm.sf_mcp FROM bob;
GRANT USE_CONNECTION ON CONNECTION sales.crm.sf_mcp TO "data-team";
GRANT MANAGE ON CONNECTION sales.crm.sf_mcp TO bob;
-- MANAGE on the connection does not reach its schema.
GRANT USE_SCHEMA ON SCHEMA sales.crm TO bob;
SHOW GRANTS ON CONNECTION sales.crm.sf_mcp;

-- Privileges must apply to the securable type.
-- connect admin admin-pw
GRANT CREATE_CATALOG ON CATALOG sales TO bob;
GRANT USE_SCHEMA ON CONNECTION sales.crm.sf_mcp TO bob;
GRANT CREATE_SCHEMA ON METASTORE TO bob;
GRANT USE_CATALOG ON SCHEMA sales.crm TO bob;
GRANT FLY ON CATALOG sales TO bob;
GRANT USE_CONNECTION ON CONNECTION sales.crm.sf_mcp TO nobody;
GRANT USE_CONNECTION ON CONNECTION sales.crm.nothing TO bob;
GRANT USE_CONNECTION ON CONNECTION sales.crm.sf_mcp TO bob, nobody;
SHOW GRANTS bob ON CONNECTION sales.crm.sf_mcp;

-- ALL PRIVILEGES covers everything but MANAGE.
GRANT ALL PRIVILEGES ON SCHEMA sales.crm TO eng;
GRANT ALL ON CONNECTION sales.crm.sf_mcp TO "review-agent";
SHOW GRANTS ON SCHEMA sales.crm;
-- connect alice alice-new-pw
GRANT USE_CONNECTION ON CONNECTION sales.crm.sf_mcp TO bob;
-- alice sees her own rows and those of her groups; carol's MANAGE is not hers to see.
SHOW GRANTS ON CONNECTION sales.crm.sf_mcp;
SHOW GRANTS TO "data-team";
SHOW GRANTS TO carol;

-- SHOW GRANTS TO and SHOW GRANTS principal ON.
-- connect admin admin-pw
SHOW GRANTS TO carol;
SHOW GRANTS TO eng;
SHOW GRANTS TO alice;
SHOW GRANTS TO nobody;
SHOW GRANTS carol ON CONNECTION sales.crm.sf_mcp;
SHOW GRANTS "data-team" ON CONNECTION sales.crm.sf_mcp;
SHOW GRANTS bob ON SCHEMA sales.crm;
REVOKE ALL PRIVILEGES ON SCHEMA sales.crm FROM eng;
-- Revoking a grant that does not exist succeeds.
REVOKE ALL PRIVILEGES ON SCHEMA sales.crm FROM eng;
REVOKE MANAGE ON CATALOG sales FROM bob;
SHOW GRANTS ON SCHEMA sales.crm;

-- Dropping a principal removes its grants and memberships.
DROP USER carol;
DROP SERVICE PRINCIPAL "review-agent";
SHOW GRANTS ON CONNECTION sales.crm.sf_mcp;
SHOW GROUPS;
-- connect carol carol-pw
-- Removing a group from the chain removes what it conveyed.
ALTER GROUP "data-team" REMOVE GROUP analysts;
-- connect alice alice-new-pw
SHOW GRANTS ON CONNECTION sales.crm.sf_mcp;
CREATE SCHEMA sales.second_try;
