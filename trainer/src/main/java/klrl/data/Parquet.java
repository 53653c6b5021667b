package klrl.data;

import blue.strategic.parquet.Hydrator;
import blue.strategic.parquet.HydratorSupplier;
import blue.strategic.parquet.ParquetReader;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import klrl.util.Json;
import klrl.util.UserError;

/**
 * Parquet data files (the format of Hugging Face datasets and verl's data), read with parquet-floor:
 * parquet-mr without Hadoop. Each row's top-level string and number columns become the fields that
 * {@link Dataset} maps to question and answer exactly as for JSONL; "file.parquet:N" names row N.
 */
final class Parquet {
    private Parquet() {}

    static List<Example> load(String spec, String promptField, String answerField) {
        Path p = Path.of(spec);
        if (!Files.isRegularFile(p)) {
            throw new UserError(spec + ": data file not found");
        }
        List<ObjectNode> rows;
        try (Stream<ObjectNode> s = ParquetReader.streamContent(p.toFile(), HydratorSupplier.constantly(ROW))) {
            rows = s.toList();
        } catch (Exception | LinkageError e) {
            throw new UserError(spec + ": not a readable parquet file (" + Json.firstLine(String.valueOf(e.getMessage())) + ")");
        } catch (OutOfMemoryError e) {
            // a damaged footer can declare lists far larger than the file; the failed allocation held nothing
            throw new UserError(spec + ": not a readable parquet file (its metadata declares more than memory holds)");
        }
        List<Example> out = new ArrayList<>();
        for (int i = 0; i < rows.size(); i++) {
            out.add(Dataset.example(rows.get(i), promptField, answerField, spec, i + 1));
        }
        if (out.isEmpty()) {
            throw new UserError(spec + ": no rows");
        }
        return out;
    }

    /** A row as a JSON object: strings, numbers and booleans as themselves; anything else as text. */
    private static final Hydrator<ObjectNode, ObjectNode> ROW = new Hydrator<>() {
        @Override
        public ObjectNode start() {
            return Json.MAPPER.createObjectNode();
        }

        @Override
        public ObjectNode add(ObjectNode row, String column, Object value) {
            if (value == null) {
                row.putNull(column);
            } else if (value instanceof Number || value instanceof Boolean || value instanceof String) {
                row.set(column, Json.MAPPER.valueToTree(value));
            } else {
                row.put(column, value.toString());
            }
            return row;
        }

        @Override
        public ObjectNode finish(ObjectNode row) {
            return row;
        }
    };
}
