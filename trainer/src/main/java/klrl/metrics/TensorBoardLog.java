package klrl.metrics;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;
import java.util.zip.CRC32C;
import klrl.metrics.tensorboard.Event;
import klrl.metrics.tensorboard.SessionLog;
import klrl.metrics.tensorboard.Summary;
import klrl.util.Json;

/**
 * OUTPUT/events.out.tfevents.*: every metrics line as TensorBoard scalars, so {@code tensorboard
 * --logdir runs/} and {@code wandb sync --sync-tensorboard} read a run. One file per process start,
 * TensorBoard's TFRecord framing (length, masked CRC32C of the length, data, masked CRC32C of the data)
 * around Event messages. A resumed run first writes a session START at its first step, from which on
 * TensorBoard drops what an interrupted process had written.
 */
public final class TensorBoardLog implements AutoCloseable {
    private final OutputStream out;
    private final PeerNames names;

    /** How every event file's name starts (TensorBoard finds them by it). */
    public static final String PREFIX = "events.out.tfevents.";

    /** How this trainer's event files' names end: other programs' files under {@link #PREFIX} are not its to remove. */
    public static final String SUFFIX = ".klrl";

    public TensorBoardLog(Path dir, long resumedAfterStep) throws IOException {
        this(dir, resumedAfterStep, PeerNames.NONE);
    }

    /** As above, every scalar that has a counterpart in the trainer {@code names} stands for also under its name there. */
    public TensorBoardLog(Path dir, long resumedAfterStep, PeerNames names) throws IOException {
        this.names = names;
        String host = java.net.InetAddress.getLoopbackAddress().getHostName();
        try {
            host = java.net.InetAddress.getLocalHost().getHostName();
        } catch (IOException e) {
            // the loopback name will do
        }
        Path file = dir.resolve(String.format(PREFIX + "%d.%s.%d" + SUFFIX, System.currentTimeMillis() / 1000, host,
                ProcessHandle.current().pid()));
        out = Files.newOutputStream(file);
        write(Event.newBuilder().setWallTime(now()).setFileVersion("brain.Event:2").build());
        if (resumedAfterStep > 0) {
            write(Event.newBuilder().setWallTime(now()).setStep(resumedAfterStep + 1)
                    .setSessionLog(SessionLog.newBuilder().setStatus(SessionLog.SessionStatus.START)).build());
        }
    }

    /** A metrics line's scalars at its step (see {@link #tags}). */
    public void write(Map<String, Object> record) {
        Summary.Builder s = Summary.newBuilder();
        tags(record).forEach((tag, v) -> s.addValue(Summary.Value.newBuilder().setTag(tag).setSimpleValue(v)));
        long step = record.get("step") instanceof Number n ? n.longValue() : 0;
        try {
            write(Event.newBuilder().setWallTime(now()).setStep(step).setSummary(s).build());
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    /**
     * A metrics line's scalars by tag: its numbers under their keys, an eval line's under "KEY/EVAL_SET";
     * an eval line's pass@k by k as "pass@K/SET", maj@k as "maj@N/SET" (N = eval_k), and per source (label
     * e.g. "level=Level 5") eval_accuracy, eval_mean_at_k, pass@K and maj@N under "NAME/SET/LABEL"; then what the
     * peer of metrics.names calls the same numbers. Other nested values (eval_se) are not scalars.
     */
    Map<String, Float> tags(Map<String, Object> record) {
        Map<String, Float> t = new LinkedHashMap<>();
        Object set = record.get("eval_set");
        record.forEach((k, v) -> {
            if (v instanceof Number n && !k.equals("step")) {
                t.put(set == null ? k : k + "/" + set, n.floatValue());
            }
        });
        if (set == null) {
            names.addStep(t);
            return t;
        }
        // nested values as JSON, as metrics.jsonl holds them: a Map keyed by Integer or by String reads alike
        JsonNode line = Json.MAPPER.valueToTree(record);
        int k = line.path("eval_k").asInt(0);
        atK("/" + set, line, k, t);
        for (var e : line.path("eval_by_source").properties()) {
            String where = "/" + set + "/" + e.getKey();
            number(t, "eval_accuracy" + where, e.getValue().get("eval_accuracy"));
            number(t, "eval_mean_at_k" + where, e.getValue().get("eval_mean_at_k"));
            atK(where, e.getValue(), k, t);
        }
        names.addEval(set.toString(), line, t);
        return t;
    }

    /** pass@j for every j the object holds, in order of j, and maj@k. */
    private static void atK(String where, JsonNode n, int k, Map<String, Float> t) {
        TreeMap<Integer, JsonNode> pass = new TreeMap<>();
        for (var e : n.path("eval_pass_at").properties()) {
            int j = intKey(e.getKey());
            if (j >= 1) {
                pass.put(j, e.getValue());
            }
        }
        pass.forEach((j, v) -> number(t, "pass@" + j + where, v));
        if (k >= 1) {
            number(t, "maj@" + k + where, n.get("eval_maj_at_k"));
        }
    }

    private static void number(Map<String, Float> t, String tag, JsonNode v) {
        if (v != null && v.isNumber()) {
            t.putIfAbsent(tag, (float) v.asDouble());
        }
    }

    /** A pass@k object's key as its k, or −1 when it is not a whole number. */
    static int intKey(String key) {
        try {
            return Integer.parseInt(key.strip());
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    private static double now() {
        return System.currentTimeMillis() / 1000.0;
    }

    private void write(Event e) throws IOException {
        byte[] data = e.toByteArray();
        ByteBuffer head = ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN);
        head.putLong(data.length);
        head.putInt(maskedCrc(head.array(), 8));
        out.write(head.array());
        out.write(data);
        out.write(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(maskedCrc(data, data.length)).array());
        out.flush();
    }

    /** TFRecord's checksum: CRC32C of the bytes, rotated right by 15 bits plus a constant. */
    public static int maskedCrc(byte[] b, int len) {
        CRC32C c = new CRC32C();
        c.update(b, 0, len);
        int crc = (int) c.getValue();
        return ((crc >>> 15) | (crc << 17)) + 0xa282ead8;
    }

    @Override
    public void close() throws IOException {
        out.close();
    }
}
