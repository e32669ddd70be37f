-- The quickstart, as the built-in admin on dbname=system.
CREATE GROUP "data-analysts";
CREATE USER "alice@example.com" WITH PASSWORD 'alice-pw';
ALTER GROUP "data-analysts" ADD USER "alice@example.com";
CREATE SERVICE PRINCIPAL "coding-agent";
CREATE CONNECTION my_github_mcp TYPE MCP
  OPTIONS (url 'https://mcp.github.example/mcp', auth_mode 'per_user_oauth', scopes 'repo read:org')
  COMMENT 'GitHub MCP server';
CREATE GROUP "sales-team";
CREATE GROUP "contractors";
CREATE CONNECTION my_salesforce_mcp TYPE MCP
  OPTIONS (url 'https://mcp.salesforce.example/mcp', auth_mode 'shared_principal', client_id 'mandate-gw',
           client_secret 'sf-client-secret-123', token_endpoint 'https://login.salesforce.example/services/oauth2/token');
CREATE CONNECTION my_prod_db_mcp TYPE MCP
  OPTIONS (url 'https://db.prod.example/mcp', auth_mode 'shared_principal', bearer_token 'prod-db-token-456')
  COMMENT 'production database';
GRANT USE_CONNECTION ON CONNECTION my_github_mcp TO "data-analysts";
GRANT USE_CONNECTION ON CONNECTION my_salesforce_mcp TO "sales-team";
-- Revoking a grant that was never made succeeds.
REVOKE USE_CONNECTION ON CONNECTION my_prod_db_mcp FROM "contractors";
SHOW GRANTS ON CONNECTION my_github_mcp;

SHOW GRANTS ON CONNECTION my_salesforce_mcp;
SHOW GRANTS ON CONNECTION my_prod_db_mcp;
SHOW GRANTS TO "data-analysts";
SHOW CATALOGS;
SHOW SCHEMAS;
SHOW CONNECTIONS;
SHOW USERS;
SHOW GROUPS;
SHOW SERVICE PRINCIPALS;
-- Secret options (client_secret, bearer_token) are masked.
DESCRIBE CONNECTION my_github_mcp;
DESCRIBE CONNECTION my_salesforce_mcp;
DESCRIBE CONNECTION my_prod_db_mcp;
DESCRIBE USER "alice@example.com";
DESCRIBE GROUP "data-analysts";
DESCRIBE SERVICE PRINCIPAL "coding-agent";

-- alice sees the grants that concern her.
-- connect alice@example.com alice-pw
SELECT current_user, current_database();
SHOW GRANTS ON CONNECTION my_github_mcp;
SHOW GRANTS ON CONNECTION my_salesforce_mcp;
SHOW GRANTS TO "alice@example.com";
-- The service principal has no password and cannot log in.
-- connect coding-agent anything
