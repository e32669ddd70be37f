-- The LLM gateway's objects: model provider services, model services, EXECUTE, rate limits, access tokens, budgets.
CREATE USER "alice@example.com" WITH PASSWORD 'alice-pw';
CREATE USER bob WITH PASSWORD 'bob-pw';
CREATE SERVICE PRINCIPAL "claude-code";
CREATE GROUP "data-analysts";
ALTER GROUP "data-analysts" ADD USER "alice@example.com";
CREATE MODEL PROVIDER SERVICE system.ai.openai_prod OPTIONS (provider 'openai', url 'https://api.openai.com/v1', api_key 'sk-live-0123456789', prices 'gpt-4.1=2.00/8.00/0.50, gpt-4.1-mini=0.40/1.60/0.10');
CREATE MODEL PROVIDER SERVICE anthropic_prod OPTIONS (provider 'anthropic', api_key 'sk-ant-0123456789', prices 'claude-sonnet-4-5=3/15/0.30/3.75') COMMENT 'Anthropic';
CREATE MODEL PROVIDER SERVICE local_vllm OPTIONS (provider 'openai_compatible', url 'http://127.0.0.1:8000/v1');
CREATE MODEL SERVICE system.ai.frontier OPTIONS (destinations 'openai_prod/gpt-4.1=80, anthropic_prod/claude-sonnet-4-5=20', fallbacks 'anthropic_prod/claude-sonnet-4-5', timeout '120s', tags 'team=platform', sensitivity 'private');
SHOW MODEL PROVIDER SERVICES;
SHOW MODEL SERVICES IN system.ai;
DESCRIBE MODEL PROVIDER SERVICE openai_prod;
DESCRIBE MODEL SERVICE frontier;
-- Option errors.
CREATE MODEL PROVIDER SERVICE bad OPTIONS (provider 'gemini', api_key 'k');
CREATE MODEL PROVIDER SERVICE bad OPTIONS (provider 'openai', url 'http://api.example.com/v1', api_key 'k');
CREATE MODEL PROVIDER SERVICE bad OPTIONS (provider 'openai', url 'https://key:secret@api.example.com/v1', api_key 'k');
CREATE MODEL PROVIDER SERVICE bad OPTIONS (provider 'openai');
CREATE MODEL PROVIDER SERVICE bad OPTIONS (provider 'openai', api_key 'k', prices 'gpt-4.1=2.00');
CREATE MODEL PROVIDER SERVICE bad OPTIONS (provider 'openai', api_key 'k', prices 'gpt-4.1=-1/2');
CREATE MODEL SERVICE bad OPTIONS (destinations 'openai_prod/gpt-4.1=80, anthropic_prod/claude-sonnet-4-5=30');
CREATE MODEL SERVICE bad OPTIONS (destinations 'openai_prod/gpt-4.1=80, anthropic_prod/claude-sonnet-4-5');
CREATE MODEL SERVICE bad OPTIONS (destinations 'nowhere/gpt-4.1');
CREATE MODEL SERVICE bad OPTIONS (destinations 'openai_prod/gpt-4.1', fallbacks 'openai_prod/gpt-4.1=5');
CREATE MODEL SERVICE bad OPTIONS (destinations 'openai_prod/gpt-4.1', timeout '2h');
CREATE MODEL SERVICE bad OPTIONS (destinations 'openai_prod/gpt-4.1', sample_rate '1.5');
CREATE MODEL SERVICE bad OPTIONS (destinations 'openai_prod/gpt-4.1', egress 'sideways');
CREATE MODEL SERVICE bad OPTIONS (destinations 'openai_prod/gpt-4.1', destination 'x');
CREATE CONNECTION gh TYPE MCP OPTIONS (url 'https://mcp.github.example/mcp', sensitivity 'PRIVATE', egress 'external');
-- Privileges: EXECUTE, and the owner's EXECUTE on the provider services it routes to.
GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "data-analysts";
GRANT USE CONNECTION ON MODEL SERVICE frontier TO bob;
SHOW GRANTS ON MODEL SERVICE frontier;
EXPLAIN ACCESS FOR "alice@example.com" VIA "claude-code" EXECUTE ON MODEL SERVICE frontier;
GRANT EXECUTE ON MODEL SERVICE frontier TO "claude-code";
EXPLAIN ACCESS FOR "alice@example.com" VIA "claude-code" EXECUTE ON MODEL SERVICE frontier;
GRANT CREATE SERVICE ON SCHEMA system.ai TO bob;
-- connect bob bob-pw
CREATE MODEL SERVICE mine OPTIONS (destinations 'openai_prod/gpt-4.1');
-- connect admin admin-pw
GRANT EXECUTE ON MODEL PROVIDER SERVICE openai_prod TO bob;
-- connect bob bob-pw
CREATE MODEL SERVICE mine OPTIONS (destinations 'openai_prod/gpt-4.1');
ALTER MODEL SERVICE mine SET OPTIONS (destinations 'anthropic_prod/claude-sonnet-4-5');
ALTER MODEL SERVICE mine SET RATE LIMIT 10 REQUESTS PER MINUTE;
ALTER MODEL SERVICE frontier SET RATE LIMIT 10 REQUESTS PER MINUTE;
-- connect admin admin-pw
ALTER MODEL SERVICE mine OWNER TO "alice@example.com";
-- Revoking the owner's EXECUTE makes the destination unusable (the gateway fails closed for it).
REVOKE EXECUTE ON MODEL PROVIDER SERVICE openai_prod FROM bob;
DESCRIBE MODEL SERVICE mine;
DROP MODEL PROVIDER SERVICE openai_prod;
ALTER MODEL PROVIDER SERVICE openai_prod RENAME TO openai_main;
SHOW MODEL SERVICES;
COMMENT ON MODEL SERVICE frontier IS 'frontier models';
-- Rate limits.
ALTER MODEL SERVICE frontier SET RATE LIMIT 1000 REQUESTS PER MINUTE;
ALTER MODEL SERVICE frontier SET RATE LIMIT 60 REQUESTS, 200000 TOKENS PER MINUTE FOR EACH USER;
ALTER MODEL SERVICE frontier SET RATE LIMIT 500000 TOKENS PER MINUTE FOR GROUP "data-analysts";
ALTER MODEL SERVICE frontier SET RATE LIMIT 5 REQUESTS PER MINUTE FOR SERVICE PRINCIPAL "claude-code";
ALTER MODEL SERVICE frontier SET RATE LIMIT 120 REQUESTS PER MINUTE FOR USER "alice@example.com";
ALTER MODEL SERVICE frontier SET RATE LIMIT 100 REQUESTS PER MINUTE FOR USER "claude-code";
ALTER CONNECTION gh SET RATE LIMIT 100 REQUESTS PER MINUTE FOR EACH USER;
ALTER CONNECTION gh SET RATE LIMIT 100 TOKENS PER MINUTE;
SHOW RATE LIMITS ON MODEL SERVICE frontier;
ALTER MODEL SERVICE frontier DROP RATE LIMIT FOR USER "alice@example.com";
ALTER MODEL SERVICE frontier DROP RATE LIMIT FOR USER "alice@example.com";
ALTER MODEL SERVICE frontier DROP RATE LIMIT IF EXISTS FOR USER "alice@example.com";
SHOW RATE LIMITS;
-- Budgets: metastore admins.
CREATE BUDGET analysts LIMIT 500 USD PER MONTH FOR GROUP "data-analysts" ON MODEL SERVICE frontier WHERE TAG project = 'checkout';
CREATE BUDGET per_user LIMIT 25.50 USD PER MONTH FOR EACH USER;
CREATE BUDGET agent LIMIT 100 USD PER MONTH FOR SERVICE PRINCIPAL "claude-code";
CREATE BUDGET agent LIMIT 100 USD PER MONTH FOR USER bob;
SHOW BUDGETS;
-- A FOR EACH USER budget lists its definition always (a user without spend: 0 spent, the whole limit
-- left), then a row per user with spend; others see the definition and their own row.
-- spend per_user alice@example.com 1250000000
-- spend per_user bob 30000000000
-- spend analysts - 2500000000
SHOW BUDGETS;
-- connect alice@example.com alice-pw
SHOW BUDGETS;
CREATE BUDGET mine LIMIT 1 USD PER MONTH FOR USER "alice@example.com";
DROP BUDGET analysts;
-- Access tokens: the token is shown once; users manage their own.
CREATE ACCESS TOKEN laptop FOR USER "alice@example.com" VIA "claude-code" EXPIRES IN '90 days' COMMENT 'Claude Code on my laptop';
CREATE ACCESS TOKEN FOR USER bob;
CREATE ACCESS TOKEN ci VIA "data-analysts";
CREATE ACCESS TOKEN ci EXPIRES IN '10 years';
SHOW ACCESS TOKENS;
SHOW ACCESS TOKENS FOR USER bob;
-- connect admin admin-pw
CREATE ACCESS TOKEN bobs FOR USER bob EXPIRES IN '1 day';
SHOW ACCESS TOKENS;
DROP ACCESS TOKEN laptop;
DROP ACCESS TOKEN laptop;
DROP BUDGET analysts;
-- Dropping a principal drops its tokens, rate limits and budgets.
DROP SERVICE PRINCIPAL "claude-code";
SHOW ACCESS TOKENS;
SHOW RATE LIMITS ON MODEL SERVICE frontier;
SHOW BUDGETS;
DROP MODEL SERVICE frontier;
SHOW RATE LIMITS;
