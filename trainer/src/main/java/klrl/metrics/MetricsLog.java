package klrl.metrics;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Map;
import klrl.util.Json;
import klrl.util.UserError;

/** OUTPUT/metrics.jsonl: one JSON object per line, flushed per line so a crash loses nothing written. */
public final class MetricsLog implements AutoCloseable {
    private final Writer w;
    private final TensorBoardLog mirror;

    /**
     * @param keepUpToStep on resume, lines after this step (written after the checkpoint) are dropped,
     *                     and so is a torn last line (the process killed in the middle of writing it)
     */
    public MetricsLog(Path file, long keepUpToStep) throws IOException {
        this(file, keepUpToStep, false);
    }

    /**
     * As above; with {@code tensorboard} every line also goes to an event file beside it, opened only
     * once the metrics file is in order, so a refused resume leaves no stray event file.
     */
    public MetricsLog(Path file, long keepUpToStep, boolean tensorboard) throws IOException {
        this(file, keepUpToStep, tensorboard ? PeerNames.NONE : null);
    }

    /**
     * As above with an event file whose scalars also carry the names {@code names} gives them (metrics.names);
     * null = no event file. The lines of metrics.jsonl keep klrl's names.
     */
    public MetricsLog(Path file, long keepUpToStep, PeerNames names) throws IOException {
        if (keepUpToStep >= 0 && Files.exists(file)) {
            StringBuilder kept = new StringBuilder();
            List<String> lines = Files.readAllLines(file, StandardCharsets.UTF_8);
            for (int i = 0; i < lines.size(); i++) {
                String line = lines.get(i);
                if (line.isBlank()) {
                    continue;
                }
                JsonNode n;
                try {
                    n = Json.MAPPER.readTree(line);
                } catch (IOException e) {
                    if (i == lines.size() - 1) {
                        continue; // torn by a kill mid-write; the step it belonged to runs again
                    }
                    throw new UserError(file + ":" + (i + 1) + ": not a JSON line; the metrics file was edited or damaged");
                }
                if (n.path("step").asLong(Long.MAX_VALUE) <= keepUpToStep) {
                    kept.append(line).append('\n');
                }
            }
            Json.writeAtomically(file, kept.toString());
        }
        w = Files.newBufferedWriter(file, StandardCharsets.UTF_8, StandardOpenOption.CREATE,
                keepUpToStep >= 0 ? StandardOpenOption.APPEND : StandardOpenOption.TRUNCATE_EXISTING,
                StandardOpenOption.WRITE);
        try {
            mirror = names != null ? new TensorBoardLog(file.toAbsolutePath().getParent(), Math.max(0, keepUpToStep), names) : null;
        } catch (IOException | RuntimeException e) {
            w.close();
            throw e;
        }
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
        if (mirror != null) {
            mirror.write(record);
        }
    }

    @Override
    public void close() throws IOException {
        w.close();
        if (mirror != null) {
            mirror.close();
        }
    }
}
