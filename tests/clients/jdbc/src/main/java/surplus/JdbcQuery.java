package surplus;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.Statement;
import java.util.Properties;

/**
 * Runs each line of standard input as one SQL statement through the ClickHouse JDBC driver and
 * prints one line per statement: {@code OK <tab> rows <tab> columns <tab> first row} (columns and
 * values joined by {@code |}) or {@code ERR <tab> message}. Arguments: JDBC URL, user, password.
 */
public final class JdbcQuery {
    private JdbcQuery() {}

    private static String clean(String s) {
        return s == null ? "NULL" : s.replace('\t', ' ').replace('\n', ' ').replace('\r', ' ');
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", args[1]);
        props.setProperty("password", args[2]);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        try (Connection conn = DriverManager.getConnection(args[0], props)) {
            String line;
            while ((line = in.readLine()) != null) {
                if (line.isBlank()) {
                    continue;
                }
                try (Statement st = conn.createStatement()) {
                    if (!st.execute(line)) {
                        System.out.println("OK\t" + st.getUpdateCount() + "\t\t");
                        continue;
                    }
                    try (ResultSet rs = st.getResultSet()) {
                        ResultSetMetaData md = rs.getMetaData();
                        StringBuilder cols = new StringBuilder();
                        for (int i = 1; i <= md.getColumnCount(); i++) {
                            cols.append(i > 1 ? "|" : "").append(md.getColumnName(i));
                        }
                        long n = 0;
                        StringBuilder first = new StringBuilder();
                        while (rs.next()) {
                            if (n == 0) {
                                for (int i = 1; i <= md.getColumnCount(); i++) {
                                    first.append(i > 1 ? "|" : "").append(clean(rs.getString(i)));
                                }
                            }
                            n++;
                        }
                        System.out.println("OK\t" + n + "\t" + cols + "\t" + first);
                    }
                } catch (Exception e) {
                    System.out.println("ERR\t" + clean(String.valueOf(e.getMessage())));
                }
            }
        }
    }
}
