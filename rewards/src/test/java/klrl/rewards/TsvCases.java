package klrl.rewards;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/** The tab-separated case files of the tests: '#' lines and blank lines skipped, every row checked for its field count. */
final class TsvCases {
    private TsvCases() {}

    /** A row's fields and its 1-based line number. */
    record Row(String[] fields, int line) {}

    static List<Row> read(String resource, int fields) throws IOException {
        List<Row> out = new ArrayList<>();
        try (var in = TsvCases.class.getResourceAsStream(resource)) {
            String[] lines = new String(in.readAllBytes(), StandardCharsets.UTF_8).split("\n");
            for (int i = 0; i < lines.length; i++) {
                if (lines[i].startsWith("#") || lines[i].isBlank()) {
                    continue;
                }
                String[] f = lines[i].split("\t", -1);
                assertEquals(fields, f.length, resource + " line " + (i + 1) + " needs " + fields + " tab-separated fields");
                out.add(new Row(f, i + 1));
            }
        }
        return out;
    }
}
