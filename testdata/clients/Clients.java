// pgJDBC against Mandate's SQL endpoint. Run by TestSQLClients
// (cmd/mandate/clients_e2e_test.go) in the JVM's source-file mode:
//
//     java -cp /usr/share/java/postgresql.jar Clients.java
//
// The connection comes from libpq's variables (PGHOST, PGPORT, PGUSER,
// PGPASSWORD, PGDATABASE, PGSSLROOTCERT); TLS is verify-full against the
// server's certificate. Prints lines "jdbc <what> <value>" that the test
// checks; "jdbc audit <action>|<count>" are the rows of the SQL audit counted
// by action, read with a server-side prepared statement.

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class Clients {
    static String env(String name) {
        String v = System.getenv(name);
        if (v == null || v.isEmpty()) {
            throw new IllegalStateException(name + " is not set");
        }
        return v;
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + env("PGHOST") + ":" + env("PGPORT") + "/" + env("PGDATABASE");
        Properties props = new Properties();
        props.setProperty("user", env("PGUSER"));
        props.setProperty("password", env("PGPASSWORD"));
        props.setProperty("sslmode", "verify-full");
        props.setProperty("sslrootcert", env("PGSSLROOTCERT"));
        props.setProperty("connectTimeout", "30");
        props.setProperty("ApplicationName", "mandate-clients-test");
        try (Connection c = DriverManager.getConnection(url, props)) {
            DatabaseMetaData md = c.getMetaData();
            System.out.println("jdbc driver " + md.getDriverVersion());
            System.out.println("jdbc server " + md.getDatabaseProductName() + " " + md.getDatabaseProductVersion());

            List<String> schemas = new ArrayList<>();
            try (ResultSet rs = md.getSchemas()) {
                while (rs.next()) {
                    schemas.add(rs.getString("TABLE_SCHEM"));
                }
            }
            System.out.println("jdbc schemas " + String.join(",", schemas));
            if (schemas.contains("access")) {
                System.out.println("jdbc schemas contain access");
            }

            try (ResultSet rs = md.getTables(null, "access", "%", new String[] {"TABLE"})) {
                while (rs.next()) {
                    System.out.println("jdbc tables " + rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME")
                            + " " + rs.getString("TABLE_TYPE"));
                }
            }

            List<String> cols = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, "access", "audit", "%")) {
                while (rs.next()) {
                    cols.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME"));
                }
            }
            System.out.println("jdbc columns " + String.join(",", cols));

            // An aggregate with a bound parameter, run past pgJDBC's
            // prepareThreshold (5): the later runs use a named server-side
            // statement and binary results.
            String sql = "SELECT action_name, count(*) AS n FROM system.access.audit"
                    + " WHERE service_name = ? GROUP BY action_name ORDER BY action_name";
            List<String> first = null;
            boolean agree = true;
            try (PreparedStatement ps = c.prepareStatement(sql)) {
                for (int run = 0; run < 7; run++) {
                    ps.setString(1, "sql");
                    List<String> rows = new ArrayList<>();
                    try (ResultSet rs = ps.executeQuery()) {
                        while (rs.next()) {
                            rows.add(rs.getString(1) + "|" + rs.getLong(2));
                        }
                    }
                    if (first == null) {
                        first = rows;
                    } else if (!first.equals(rows)) {
                        agree = false;
                        System.out.println("jdbc run " + run + " differs: " + rows);
                    }
                }
            }
            for (String r : first) {
                System.out.println("jdbc audit " + r);
            }
            if (agree) {
                System.out.println("jdbc prepared runs agree");
            }
        }
    }
}
