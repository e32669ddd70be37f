-- Grafana's PostgreSQL data source: the queries it sends to find out the
-- server version, TimescaleDB, the schemas, tables and columns of a database
-- (configuration page, query builder, code editor completion, schema API),
-- as in Grafana's public source, with the values a user would choose here
-- (schema access, table access.audit).
--
-- Replayed by TestSQLClients/grafana (cmd/mandate/clients_e2e_test.go) over
-- pgx, in the simple and the extended protocol, as a user granted SELECT on
-- system.access: each query must succeed.
--
-- Format: a query starts at its "-- name:" line and runs to the next one (a
-- trailing semicolon is dropped). "-- source:" says where it comes from,
-- "-- args:" gives its $n parameters as text (separated by " | "), and each
-- "-- want:" a value that some row of the result must hold.

-- name: health check (pgx Ping)
-- source: https://github.com/grafana/grafana/blob/main/pkg/tsdb/grafana-postgresql-datasource/pgx/handler_checkhealth.go
-- ping

-- name: getVersion (configuration page, auto-detects the version)
-- source: https://github.com/grafana/grafana/blob/main/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts
-- source: https://github.com/grafana/grafana/blob/main/public/app/plugins/datasource/grafana-postgresql-datasource/configuration/useAutoDetectFeatures.ts
-- want: 1600
SELECT current_setting('server_version_num')::int/100 as version

-- name: getTimescaleDBVersion
-- source: https://github.com/grafana/grafana/blob/main/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts
SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'

-- name: showSchemas
-- source: https://github.com/grafana/grafana/blob/main/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts
-- want: access
SELECT schema_name AS "name"
    FROM information_schema.schemata
    WHERE schema_name NOT IN ('information_schema',
                              'pg_catalog',
                              'pg_toast',
                              '_timescaledb_cache',
                              '_timescaledb_catalog',
                              '_timescaledb_internal',
                              '_timescaledb_config',
                              'timescaledb_information',
                              'timescaledb_experimental')
    ORDER BY schema_name

-- name: showTables (of a schema)
-- source: https://github.com/grafana/grafana/blob/main/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts
-- want: audit
SELECT quote_ident(table_name) AS "table"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = 'access'
      ORDER BY 1

-- name: showTables (of the search path, the others qualified; fetchTables)
-- source: https://github.com/grafana/grafana/blob/main/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts
-- want: access.audit
SELECT
    CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          ) THEN 0 ELSE 1 END, 1

-- name: getSchema (columns of a qualified table)
-- source: https://github.com/grafana/grafana/blob/main/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts
-- want: event_time
-- want: timestamp with time zone
SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('access.audit'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('access.audit'))[1]
          AND quote_ident(table_name) = (parse_ident('access.audit'))[2]
        ELSE quote_ident(table_name) = 'access.audit'
          AND 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      END

-- name: getSchema (columns of an unqualified table, looked up in the search path)
-- source: https://github.com/grafana/grafana/blob/main/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts
SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('audit'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('audit'))[1]
          AND quote_ident(table_name) = (parse_ident('audit'))[2]
        ELSE quote_ident(table_name) = 'audit'
          AND 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      END

-- name: querySchemas (schema API)
-- source: https://github.com/grafana/grafana/blob/main/pkg/tsdb/grafana-postgresql-datasource/schema.go
-- want: access
SELECT schema_name FROM information_schema.schemata
		 WHERE schema_name NOT LIKE 'pg_%' AND schema_name != 'information_schema'
		 ORDER BY schema_name

-- name: queryTables (schema API)
-- source: https://github.com/grafana/grafana/blob/main/pkg/tsdb/grafana-postgresql-datasource/schema.go
-- args: access
-- want: audit
SELECT table_name FROM information_schema.tables
		 WHERE table_schema = $1 AND table_type IN ('BASE TABLE', 'VIEW')
		 ORDER BY table_name

-- name: queryColumns (schema API)
-- source: https://github.com/grafana/grafana/blob/main/pkg/tsdb/grafana-postgresql-datasource/schema.go
-- args: access | audit
-- want: latency_ms
-- want: float8
SELECT column_name, data_type, udt_name, numeric_precision, numeric_scale
		 FROM information_schema.columns
		 WHERE table_schema = $1 AND table_name = $2
		 ORDER BY ordinal_position

-- name: ColumnValues (schema API: distinct values of columns)
-- source: https://github.com/grafana/grafana/blob/main/pkg/tsdb/grafana-postgresql-datasource/schema.go
-- want: service_name
-- want: sql
SELECT 'service_name' AS col_name, "service_name"::text AS val FROM (SELECT DISTINCT "service_name" FROM "access"."audit" WHERE "service_name" IS NOT NULL ORDER BY "service_name" LIMIT 100) sub_0 UNION ALL SELECT 'decision' AS col_name, "decision"::text AS val FROM (SELECT DISTINCT "decision" FROM "access"."audit" WHERE "decision" IS NOT NULL ORDER BY "decision" LIMIT 100) sub_1

-- name: a time series panel ($__timeGroupAlias(event_time, 1m), $__timeFilter(event_time) expanded)
-- source: https://github.com/grafana/grafana/blob/main/pkg/tsdb/grafana-postgresql-datasource/macros.go
SELECT
  floor(extract(epoch from event_time)/60)*60 AS "time",
  count(*) AS "events"
FROM access.audit
WHERE
  event_time BETWEEN '2000-01-01T00:00:00Z' AND '2100-01-01T00:00:00Z'
GROUP BY 1
ORDER BY 1
