-- Guardrails are policies: built-ins (USING system.ai.<name> OPTIONS) or Rego, on the call, the result or both,
-- enforcing or monitoring, inherited downwards from catalogs and schemas.
CREATE CONNECTION my_github_mcp TYPE MCP OPTIONS (url 'https://mcp.github.example/mcp');
CREATE CATALOG eng;
CREATE SCHEMA eng.tools;
CREATE CONNECTION eng.tools.jira TYPE MCP OPTIONS (url 'https://jira.example/mcp');
CREATE POLICY pii ON CONNECTION my_github_mcp FOR CALL AND RESULT
  USING system.ai.detect_sensitive_data OPTIONS (entities 'EMAIL,PHONE,CREDIT_CARD,IBAN,US_SSN,SECRET', action 'mask');
CREATE POLICY no_injection ON SCHEMA system.ai FOR RESULT USING system.ai.block_prompt_injection OPTIONS (threshold '0.8');
CREATE POLICY no_exfil ON SCHEMA system.ai FOR CALL AND RESULT USING system.ai.prevent_exfiltration OPTIONS (allowed_domains 'docs.example.com, *.corp.example');
CREATE POLICY pins ON CONNECTION my_github_mcp FOR CALL AND RESULT USING system.ai.pin_tools;
CREATE POLICY schemas ON CATALOG eng USING validate_schema;
CREATE POLICY no_salaries ON SCHEMA eng.tools FOR RESULT AS $$
package mandate.salaries
deny contains "salaries are private" if { contains(input.content.content[_].text, "salary") }
$$;
ALTER POLICY no_injection SET MODE MONITOR;
SHOW POLICIES ON CONNECTION my_github_mcp;
SHOW POLICIES ON CONNECTION eng.tools.jira;
ALTER POLICY no_injection SET MODE ENFORCE;
SHOW POLICIES;
-- Options are checked when the policy is created: the error names the option.
CREATE POLICY bad ON CONNECTION my_github_mcp USING system.ai.detect_sensitive_data OPTIONS (entities 'EMAIL,SSN');
CREATE POLICY bad ON CONNECTION my_github_mcp USING system.ai.block_prompt_injection OPTIONS (threshold '2');
CREATE POLICY bad ON CONNECTION my_github_mcp USING system.ai.block_prompt_injection OPTIONS (treshold '0.8');
CREATE POLICY bad ON CONNECTION my_github_mcp USING system.ai.prevent_exfiltration OPTIONS (allowed_domains 'http://x/y');
CREATE POLICY bad ON CONNECTION my_github_mcp USING system.ai.detect_sensitive_data OPTIONS (custom 'EMPLOYEE_ID=E[0-9');
CREATE POLICY bad ON CONNECTION my_github_mcp USING system.ai.pin_tools OPTIONS (approve 'always');
CREATE POLICY bad ON CONNECTION my_github_mcp USING system.ai.validate_schema OPTIONS (strict 'true');
CREATE POLICY bad ON CONNECTION my_github_mcp USING system.ai.block_everything;
CREATE POLICY pii ON CONNECTION eng.tools.jira USING system.ai.detect_sensitive_data;
ALTER POLICY nowhere SET MODE MONITOR;
-- Tools: nothing seen yet.
SHOW TOOLS ON CONNECTION my_github_mcp;
ALTER CONNECTION my_github_mcp APPROVE TOOLS search_repos;
ALTER CONNECTION my_github_mcp APPROVE TOOLS;
SHOW TOOLS ON CONNECTION nowhere;
-- Others may neither attach guardrails to what they cannot manage nor switch them off.
CREATE USER bob WITH PASSWORD 'bob-pw';
-- connect bob bob-pw
CREATE POLICY sneaky ON CATALOG eng USING system.ai.pin_tools;
ALTER POLICY pii SET MODE MONITOR;
ALTER CONNECTION my_github_mcp APPROVE TOOLS;
