package klrl.metrics;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Map;
import klrl.util.Json;

/** OUTPUT/metrics.jsonl: one JSON object per line, flushed per line so a crash loses nothing written. */
public final class MetricsLog implements AutoCloseable {
    private final Writer w;

    /** @param keepUpToStep on resume, lines after this step (written after the checkpoint) are dropped */
    public MetricsLog(Path file, long keepUpToStep) throws IOException {
        if (keepUpToStep >= 0 && Files.exists(file)) {
            StringBuilder kept = new StringBuilder();
            for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
                if (line.isBlank()) {
                    continue;
                }
                if (Json.MAPPER.readTree(line).path("step").asLong(Long.MAX_VALUE) <= keepUpToStep) {
                    kept.append(line).append('\n');
                }
            }
            Json.writeAtomically(file, kept.toString());
        }
        w = Files.newBufferedWriter(file, StandardCharsets.UTF_8, StandardOpenOption.CREATE,
                keepUpToStep >= 0 ? StandardOpenOption.APPEND : StandardOpenOption.TRUNCATE_EXISTING,
                StandardOpenOption.WRITE);
    }

    public void write(Map<String, Object> record) {
        ObjectNode o = Json.MAPPER.createObjectNode();
        record.forEach((k, v) -> o.set(k, Json.MAPPER.valueToTree(v)));
        try {
            w.write(Json.write(o));
            w.write('\n');
            w.flush();
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    @Override
    public void close() throws IOException {
        w.close();
    }
}
