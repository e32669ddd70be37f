// node-postgres against Mandate's SQL endpoint. Run by TestSQLClients
// (cmd/mandate/clients_e2e_test.go): node clients.js
//
// The connection comes from libpq's variables (PGHOST, PGPORT, PGUSER,
// PGPASSWORD, PGDATABASE, PGSSLROOTCERT); TLS verifies the server's
// certificate. Prints lines "pg <what> <value>" that the test checks;
// "pg audit <action>|<count>" are the rows of the SQL audit counted by
// action, read with a parameterized query (extended protocol).
'use strict';

const fs = require('fs');
const { Client } = require('pg');

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

async function main() {
  const client = new Client({
    host: env('PGHOST'),
    port: Number(env('PGPORT')),
    user: env('PGUSER'),
    password: env('PGPASSWORD'),
    database: env('PGDATABASE'),
    ssl: { ca: fs.readFileSync(env('PGSSLROOTCERT')), rejectUnauthorized: true },
    connectionTimeoutMillis: 30000,
  });
  await client.connect();
  try {
    console.log('pg ssl', client.connection.stream.encrypted === true);
    const agg = await client.query({
      text: 'SELECT action_name, count(*) AS n FROM system.access.audit WHERE service_name = $1 GROUP BY action_name ORDER BY action_name',
      values: ['sql'],
    });
    for (const r of agg.rows) console.log(`pg audit ${r.action_name}|${r.n}`);
    const one = await client.query(
      'SELECT event_time, response FROM system.access.audit WHERE action_name = $1 ORDER BY event_time LIMIT 1',
      ['GRANT'],
    );
    const row = one.rows[0];
    console.log('pg types', row.event_time.constructor.name, typeof row.response, row.response.status_code);
  } finally {
    await client.end();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
