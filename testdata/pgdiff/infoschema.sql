-- information_schema views (copied into PostgreSQL as tables).
SELECT catalog_name, catalog_owner, comment FROM system.information_schema.catalogs ORDER BY 1
SELECT catalog_name, schema_name FROM system.information_schema.schemata ORDER BY 1, 2
SELECT table_catalog, table_schema, table_name, table_type FROM system.information_schema.tables ORDER BY 1, 2, 3
SELECT count(*), count(DISTINCT table_schema) FROM system.information_schema.tables
SELECT connection_name, connection_type, connection_options->>'url' FROM system.information_schema.connections ORDER BY 1
SELECT user_name, user_kind, is_admin FROM system.information_schema.users ORDER BY 1
SELECT group_name, count(*) FROM system.information_schema.group_members GROUP BY 1 ORDER BY 1
SELECT grantee, privilege_type, table_schema FROM system.information_schema.table_privileges ORDER BY 1, 2, 3
SELECT grantee, privilege_type, connection_name, inherited_from FROM system.information_schema.connection_privileges ORDER BY 1, 2, 3
SELECT u.user_name, count(a.event_id) FROM system.information_schema.users u LEFT JOIN system.access.audit a ON a.user_identity = u.user_name GROUP BY 1 ORDER BY 1
SELECT user_name FROM system.information_schema.users WHERE user_name NOT IN (SELECT member_name FROM system.information_schema.group_members) ORDER BY 1
SELECT table_name, upper(table_schema) || '.' || table_name FROM system.information_schema.tables WHERE table_schema = 'information_schema' AND table_name LIKE '%privileges' ORDER BY 1
SELECT created < now() FROM system.information_schema.catalogs LIMIT 1
SELECT is_admin, count(*) FROM system.information_schema.users GROUP BY 1 ORDER BY 1
