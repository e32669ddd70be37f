-- The queries whose answers must not change when a data directory of the
-- previous store layout is opened by the current Mandate.
SELECT user_name, user_kind, is_admin, comment FROM information_schema.users ORDER BY 1;
SELECT group_name, is_admin, comment FROM information_schema.groups ORDER BY 1;
SELECT group_name, member_name, member_kind FROM information_schema.group_members ORDER BY 1, 2;
SELECT catalog_name, catalog_owner, comment FROM information_schema.catalogs ORDER BY 1;
SELECT catalog_name, schema_name, schema_owner, comment FROM information_schema.schemata ORDER BY 1, 2;
SELECT connection_catalog, connection_schema, connection_name, connection_owner, connection_type, connection_options, comment FROM information_schema.connections ORDER BY 1, 2, 3;
SELECT grantor, grantee, catalog_name, privilege_type, inherited_from FROM information_schema.catalog_privileges ORDER BY 2, 3, 4;
SELECT grantor, grantee, connection_catalog, connection_schema, connection_name, privilege_type, inherited_from FROM information_schema.connection_privileges ORDER BY 2, 3, 4, 5, 6;
SELECT grantor, grantee, table_catalog, table_schema, table_name, privilege_type FROM information_schema.table_privileges ORDER BY 2, 3, 4, 5, 6;
SHOW POLICIES;
SELECT event_id, service_name, action_name, user_identity, identity_metadata, request_id, securable_type, securable_name, response, decision, reason, latency_ms FROM system.access.audit WHERE service_name = 'mcp' ORDER BY event_time, event_id;
SELECT action_name, user_identity, securable_type, securable_name, request_params, response, decision FROM system.access.audit WHERE service_name = 'sql' ORDER BY event_time, action_name;
