package klrl.metrics;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.zip.CRC32C;
import klrl.metrics.tensorboard.Event;
import klrl.metrics.tensorboard.SessionLog;
import klrl.metrics.tensorboard.Summary;

/**
 * OUTPUT/events.out.tfevents.*: every metrics line as TensorBoard scalars, so {@code tensorboard
 * --logdir runs/} and {@code wandb sync --sync-tensorboard} read a run. One file per process start,
 * TensorBoard's TFRecord framing (length, masked CRC32C of the length, data, masked CRC32C of the data)
 * around Event messages. A resumed run first writes a session START at its first step, from which on
 * TensorBoard drops what an interrupted process had written.
 */
public final class TensorBoardLog implements AutoCloseable {
    private final OutputStream out;

    /** How every event file's name starts (TensorBoard finds them by it). */
    public static final String PREFIX = "events.out.tfevents.";

    /** How this trainer's event files' names end: other programs' files under {@link #PREFIX} are not its to remove. */
    public static final String SUFFIX = ".klrl";

    public TensorBoardLog(Path dir, long resumedAfterStep) throws IOException {
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

    /** A metrics line's numbers as scalars at its step; an eval line's under "NAME/EVAL_SET". */
    public void write(Map<String, Object> record) {
        Summary.Builder s = Summary.newBuilder();
        Object set = record.get("eval_set");
        record.forEach((k, v) -> {
            if (v instanceof Number n && !k.equals("step")) {
                s.addValue(Summary.Value.newBuilder().setTag(set == null ? k : k + "/" + set).setSimpleValue(n.floatValue()));
            }
        });
        long step = record.get("step") instanceof Number n ? n.longValue() : 0;
        try {
            write(Event.newBuilder().setWallTime(now()).setStep(step).setSummary(s).build());
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
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
