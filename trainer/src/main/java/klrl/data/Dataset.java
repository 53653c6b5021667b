package klrl.data;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import klrl.util.Json;
import klrl.util.UserError;

/**
 * JSONL problem sets. Rows may be MATH-style ({"problem", "solution"} — the solution's last \boxed{}
 * is the gold answer), GSM8K/plain ({"question", "answer"}), or use configured field names.
 */
public final class Dataset {
    private Dataset() {}

    /** The bundled synthetic arithmetic sets, inside the jar. */
    public static final String BUNDLED_TRAIN = "bundled:arith-train", BUNDLED_TEST = "bundled:arith-test",
            BUNDLED_WARMUP_FAMILIES = "bundled:warmup-families";

    public static List<Example> load(String spec, String promptField, String answerField) {
        String where = spec;
        if (spec.endsWith(".parquet")) {
            return Parquet.load(spec, promptField, answerField);
        }
        try (InputStream in = open(spec)) {
            BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
            List<Example> out = new ArrayList<>();
            String line;
            int n = 0;
            while ((line = r.readLine()) != null) {
                n++;
                if (line.isBlank()) {
                    continue;
                }
                JsonNode row;
                try {
                    row = Json.MAPPER.readTree(line);
                } catch (IOException e) {
                    throw new UserError(where + ":" + n + ": not valid JSON");
                }
                out.add(example(row, promptField, answerField, where, n));
            }
            if (out.isEmpty()) {
                throw new UserError(where + ": no rows");
            }
            return out;
        } catch (IOException e) {
            throw new UserError(where + ": cannot read (" + e.getMessage() + ")");
        }
    }

    private static InputStream open(String spec) throws IOException {
        if (spec.startsWith("bundled:")) {
            InputStream in = Dataset.class.getResourceAsStream("/data/" + spec.substring(8) + ".jsonl");
            if (in == null) {
                throw new UserError(spec + ": no such bundled data set");
            }
            return in;
        }
        Path p = Path.of(spec);
        if (!Files.isRegularFile(p)) {
            throw new UserError(spec + ": data file not found");
        }
        return Files.newInputStream(p);
    }

    /** One row of any format as an example: the same field mapping for JSONL and parquet. */
    static Example example(JsonNode row, String promptField, String answerField, String where, int n) {
        String q = field(row, promptField, List.of("problem", "question", "prompt"), where, n, "question");
        String a = field(row, answerField, List.of("answer", "solution", "gold"), where, n, "answer");
        return new Example(q, a, where + ":" + n);
    }

    private static String field(JsonNode row, String configured, List<String> fallbacks, String where, int line, String what) {
        List<String> names = configured != null ? List.of(configured) : fallbacks;
        for (String f : names) {
            JsonNode v = row.get(f);
            if (v != null && !v.isNull()) {
                if (!v.isValueNode()) {
                    throw new UserError(where + ":" + line + ": field '" + f + "' must be a string or number");
                }
                return v.asText();
            }
        }
        throw new UserError(where + ":" + line + ": no " + what + " field; expected one of " + names
                + (configured == null ? " (set data.prompt_field / data.answer_field)" : ""));
    }
}
