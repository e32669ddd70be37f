"""Python clients against Mandate's SQL endpoint.

Run by TestSQLClients (cmd/mandate/clients_e2e_test.go):

    python3 clients.py psycopg2|sqlalchemy|pandas

The connection comes from libpq's variables (PGHOST, PGPORT, PGUSER,
PGPASSWORD, PGDATABASE, PGSSLROOTCERT); TLS is verify-full against the
server's certificate. Each client prints lines "<client> <what> <value>"
that the test checks; "<client> audit <action>|<count>" are the rows of the
SQL audit counted by action, read with the client's own parameter binding.
"""

import datetime
import os
import sys

AGG = (
    "SELECT action_name, count(*) AS n FROM system.access.audit "
    "WHERE service_name = %(service)s GROUP BY action_name ORDER BY action_name"
)


def conn_args():
    return {
        "host": os.environ["PGHOST"],
        "port": int(os.environ["PGPORT"]),
        "user": os.environ["PGUSER"],
        "password": os.environ["PGPASSWORD"],
        "dbname": os.environ["PGDATABASE"],
        "sslmode": "verify-full",
        "sslrootcert": os.environ["PGSSLROOTCERT"],
        "connect_timeout": 30,
    }


def engine():
    from sqlalchemy import create_engine
    from sqlalchemy.engine import URL

    a = conn_args()
    url = URL.create(
        "postgresql+psycopg2",
        username=a["user"],
        password=a["password"],
        host=a["host"],
        port=a["port"],
        database=a["dbname"],
        query={"sslmode": a["sslmode"], "sslrootcert": a["sslrootcert"]},
    )
    return create_engine(url, connect_args={"connect_timeout": 30})


def run_psycopg2():
    import psycopg2

    conn = psycopg2.connect(**conn_args())
    try:
        print("psycopg2 ssl", conn.info.ssl_in_use)
        with conn.cursor() as cur:
            cur.execute(AGG, {"service": "sql"})
            for action, n in cur.fetchall():
                print(f"psycopg2 audit {action}|{n}")
            cur.execute(
                "SELECT event_time, response, latency_ms FROM system.access.audit "
                "WHERE action_name = %s ORDER BY event_time LIMIT 1",
                ("GRANT",),
            )
            event_time, response, latency = cur.fetchone()
            utc = event_time.utcoffset() == datetime.timedelta(0)
            print(
                "psycopg2 types",
                type(event_time).__name__,
                "utc" if utc else event_time.tzinfo,
                type(response).__name__,
                response.get("status_code"),
                type(latency).__name__,
            )
    finally:
        conn.close()


def run_sqlalchemy():
    import sqlalchemy
    from sqlalchemy import inspect, text

    print("sqlalchemy version", ".".join(sqlalchemy.__version__.split(".")[:2]))
    eng = engine()
    insp = inspect(eng)
    print("sqlalchemy schemas", ",".join(insp.get_schema_names()))
    print("sqlalchemy tables", ",".join(insp.get_table_names(schema="access")))
    cols = insp.get_columns("audit", schema="access")
    print("sqlalchemy columns", ",".join(c["name"] for c in cols))
    types = {c["name"]: str(c["type"]) for c in cols}
    print(
        "sqlalchemy types",
        " ".join(f"{n}={types.get(n)}" for n in ("event_time", "latency_ms", "response")),
    )
    with eng.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT action_name, count(*) AS n FROM system.access.audit "
                "WHERE service_name = :service GROUP BY action_name ORDER BY action_name"
            ),
            {"service": "sql"},
        )
        for action, n in rows:
            print(f"sqlalchemy audit {action}|{n}")
    eng.dispose()


def run_pandas():
    import pandas as pd

    eng = engine()
    df = pd.read_sql(AGG, eng, params={"service": "sql"})
    for action, n in df.itertuples(index=False):
        print(f"pandas audit {action}|{n}")
    print("pandas dtypes", df["action_name"].dtype, df["n"].dtype)
    # A whole table, as a notebook reads it: SQLAlchemy reflects it first.
    audit = pd.read_sql_table(
        "audit",
        eng,
        schema="access",
        columns=["event_time", "action_name"],
    )
    print("pandas read_sql_table", len(audit), audit["event_time"].dtype)
    eng.dispose()


CLIENTS = {"psycopg2": run_psycopg2, "sqlalchemy": run_sqlalchemy, "pandas": run_pandas}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CLIENTS:
        sys.exit("usage: clients.py " + "|".join(CLIENTS))
    CLIENTS[sys.argv[1]]()
