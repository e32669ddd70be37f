-- EXPLAIN ACCESS: the on-behalf-of rule, with the derivation as rows.
CREATE GROUP "data-analysts";
CREATE USER "alice@example.com" WITH PASSWORD 'alice-pw';
CREATE USER "bob@example.com" WITH PASSWORD 'bob-pw';
ALTER GROUP "data-analysts" ADD USER "alice@example.com";
CREATE SERVICE PRINCIPAL "coding-agent";
CREATE CONNECTION my_github_mcp TYPE MCP OPTIONS (url 'https://mcp.github.example/mcp');
GRANT USE_CONNECTION ON CONNECTION my_github_mcp TO "data-analysts";
SHOW REVISION;

-- The human may use it; the agent was never granted it: the agent cannot act for her.
EXPLAIN ACCESS FOR "alice@example.com" VIA "coding-agent" USE_CONNECTION ON CONNECTION my_github_mcp;
GRANT USE CONNECTION ON CONNECTION my_github_mcp TO "coding-agent";
EXPLAIN ACCESS FOR "alice@example.com" VIA "coding-agent" USE_CONNECTION ON CONNECTION my_github_mcp;
-- The agent cannot stretch a human beyond her grants.
EXPLAIN ACCESS FOR "bob@example.com" VIA "coding-agent" USE_CONNECTION ON CONNECTION my_github_mcp;
-- An agent acting on its own.
EXPLAIN ACCESS FOR "coding-agent" USE_CONNECTION ON CONNECTION my_github_mcp;
-- A user is not an agent.
EXPLAIN ACCESS FOR "alice@example.com" VIA "bob@example.com" USE_CONNECTION ON CONNECTION my_github_mcp;
EXPLAIN ACCESS FOR "nobody" USE_CONNECTION ON CONNECTION my_github_mcp;
EXPLAIN ACCESS FOR "alice@example.com" USE_CATALOG ON CONNECTION my_github_mcp;
-- Others may not look at someone else's access.
-- connect bob@example.com bob-pw
EXPLAIN ACCESS FOR "alice@example.com" USE_CONNECTION ON CONNECTION my_github_mcp;
EXPLAIN ACCESS FOR "bob@example.com" USE_CONNECTION ON CONNECTION my_github_mcp;
SHOW REVISION;
